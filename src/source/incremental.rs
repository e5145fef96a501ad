//! One read in progress: following links, the `modifiedon` watermark, change-tracking
//! outcomes.

use super::MODIFIED_ON;
use super::checkpoint::{CHECKPOINT_VERSION, Checkpoint, Position, ReadMode, Watermark};
use super::decode::RecordDecoder;
use super::page::{Page, RecordChange};
use crate::client::{DataverseClient, Prefer};
use crate::error::{Error, ErrorKind, Result};
use crate::metadata::EntityMetadata;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use url::Url;

/// Dataverse: the change-tracking token has expired.
const EXPIRED_TOKEN: &str = "0x80044352";
/// Dataverse: the table is not enabled for change tracking.
const NOT_TRACKED: &str = "0x80072491";

/// A read in progress. Holds no page: each call of [`Reader::next_page`] fetches, decodes and
/// hands over one.
pub(super) struct Reader {
    client: DataverseClient,
    decoder: RecordDecoder,
    prefer: Prefer,
    /// The checkpoint fields that do not change during the read.
    base: Checkpoint,
    /// The URL of the next page.
    next: Option<Url>,
    /// Pages of this read returned so far.
    pages: u32,
    /// `modified_on`: the watermark the read started from (its ids are skipped).
    since: Option<Watermark>,
    /// `modified_on`: the watermark reached so far.
    reached: Option<Watermark>,
    /// Hashes of every URL this read has requested or will request next: a next link among
    /// them would read pages again, forever.
    followed: HashSet<u64>,
}

impl std::fmt::Debug for Reader {
    /// Leaves out the next link's query, which holds the paging or delta token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("base", &self.base)
            .field("next", &self.next.as_ref().map(Url::path))
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl Reader {
    pub fn new(
        client: DataverseClient,
        decoder: RecordDecoder,
        prefer: Prefer,
        base: Checkpoint,
    ) -> Self {
        Self {
            client,
            decoder,
            prefer,
            base,
            next: None,
            pages: 0,
            since: None,
            reached: None,
            followed: HashSet::new(),
        }
    }

    pub fn base(&self) -> &Checkpoint {
        &self.base
    }

    pub fn client(&self) -> &DataverseClient {
        &self.client
    }

    pub fn metadata(&self) -> &Arc<EntityMetadata> {
        self.decoder.metadata()
    }

    /// Sets where the read starts.
    pub fn continue_at(
        &mut self,
        url: Url,
        pages: u32,
        since: Option<Watermark>,
        reached: Option<Watermark>,
    ) {
        self.followed.insert(link_hash(&url));
        self.next = Some(url);
        self.pages = pages;
        self.since = since;
        self.reached = reached;
    }

    /// Accepts a checkpoint made for exactly this read, returning its position. One made for
    /// another table, mode, column set or filter (a job whose mapping changed) cannot say what
    /// this read has not seen yet: that asks for a full read, as an expired delta token does.
    pub fn check_checkpoint(&self, checkpoint: Checkpoint) -> Result<Position> {
        let base = &self.base;
        if checkpoint.version != CHECKPOINT_VERSION {
            return Err(Error::new(
                ErrorKind::ResyncRequired,
                format!(
                    "the checkpoint has format version {}, this crate reads version {CHECKPOINT_VERSION}; read everything again without it",
                    checkpoint.version
                ),
            ));
        }
        let mut differences = Vec::new();
        if checkpoint.entity != base.entity {
            differences.push(format!(
                "it was made for table `{}`, this source reads `{}`",
                checkpoint.entity, base.entity
            ));
        }
        if checkpoint.mode != base.mode {
            differences.push(format!(
                "it was made for a {} read, this source reads in {} mode",
                checkpoint.mode, base.mode
            ));
        }
        if checkpoint.columns != base.columns {
            differences.push(format!(
                "it was made for the columns [{}], this source reads [{}]",
                checkpoint.columns.join(", "),
                base.columns.join(", ")
            ));
        }
        if checkpoint.filter != base.filter {
            differences.push(format!(
                "it was made for the filter {}, this source uses {}",
                describe_filter(checkpoint.filter.as_deref()),
                describe_filter(base.filter.as_deref())
            ));
        }
        let consistent = match (&checkpoint.position, base.mode) {
            (Position::Reading { .. }, _) => true,
            (Position::Delta { .. }, ReadMode::ChangeTracking) => true,
            (Position::Watermark { .. }, ReadMode::ModifiedOn) => true,
            (Position::Complete, ReadMode::Full) => true,
            _ => checkpoint.mode != base.mode,
        };
        if !consistent {
            differences.push(format!(
                "its position does not belong to a {} read",
                base.mode
            ));
        }
        if !differences.is_empty() {
            return Err(Error::new(
                ErrorKind::ResyncRequired,
                format!(
                    "the checkpoint cannot be resumed by this source: {}; read everything again without it (or resume it with the source it was made for)",
                    differences.join("; ")
                ),
            ));
        }
        Ok(checkpoint.position)
    }

    /// Parses a next or delta link and refuses one that leaves the instance.
    pub fn check_link(&self, link: &str, what: &str) -> Result<Url> {
        let url = Url::parse(link).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("the {what} is not an absolute URL ({e})"),
            )
        })?;
        self.client.ensure_same_origin(&url, what)?;
        Ok(url)
    }

    /// Fetches, decodes and returns the next page. Only called while a page is due.
    pub async fn next_page(&mut self) -> Result<Page> {
        let url = self
            .next
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Protocol, "the read has already finished"))?;
        let number = self.pages + 1;
        let table = self.base.entity.clone();
        let response = self
            .client
            .get(&url, &self.prefer)
            .await
            .map_err(|e| self.classify(e))?;
        let decoded = self.decoder.decode_page(&response.body).map_err(|e| {
            Error::decode(format!(
                "page {number} of `{table}` could not be decoded: {e}"
            ))
        })?;
        let preference_applied = response.preference_applied;
        drop(response.body);

        let mut changes = decoded.changes;
        if self.base.mode == ReadMode::ModifiedOn {
            changes = self.apply_watermark(changes, number)?;
        }

        let position = if let Some(link) = decoded.next_link {
            let next = self.check_link(&link, &format!("next link of page {number}"))?;
            if !self.followed.insert(link_hash(&next)) {
                let whither = if next == url {
                    "to itself as its next page"
                } else {
                    "back to a page this read already requested"
                };
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "page {number} of `{table}` links {whither} (`{}`); stopped instead of reading the same pages forever",
                        without_tokens(&next)
                    ),
                ));
            }
            self.next = Some(next);
            Position::Reading {
                next_link: link,
                pages: number,
                since: self.since.clone(),
                reached: self.reached.clone(),
            }
        } else {
            match self.base.mode {
                ReadMode::ChangeTracking => {
                    let link = decoded.delta_link.ok_or_else(|| {
                        Error::new(
                            ErrorKind::Protocol,
                            format!(
                                "the change-tracking read of `{table}` ended without a delta link (Preference-Applied: {}); the table may not be enabled for change tracking: refresh its metadata and read again",
                                preference_applied.as_deref().unwrap_or("none")
                            ),
                        )
                    })?;
                    self.check_link(&link, &format!("delta link of page {number}"))?;
                    Position::Delta { delta_link: link }
                }
                ReadMode::ModifiedOn => Position::Watermark {
                    watermark: self.reached.clone(),
                },
                ReadMode::Full | ReadMode::Auto => Position::Complete,
            }
        };
        self.pages = number;
        let last = self.next.is_none();
        Ok(Page {
            changes,
            checkpoint: Checkpoint {
                position,
                ..self.base.clone()
            },
            number,
            last,
            counts: decoded.counts,
        })
    }

    /// `modified_on`: drops the records already returned at the starting watermark and moves
    /// the watermark.
    fn apply_watermark(
        &mut self,
        changes: Vec<RecordChange>,
        number: u32,
    ) -> Result<Vec<RecordChange>> {
        let mut kept = Vec::with_capacity(changes.len());
        for (index, change) in changes.into_iter().enumerate() {
            let RecordChange::Upsert(record) = &change else {
                kept.push(change);
                continue;
            };
            let modified_on = record
                .get(MODIFIED_ON)
                .and_then(|f| f.value.as_str())
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&Utc))
                .ok_or_else(|| {
                    Error::decode(format!(
                        "record {} of page {number} of `{}` has no valid `{MODIFIED_ON}`, which a modified_on read needs",
                        index + 1,
                        self.base.entity
                    ))
                })?;
            if self
                .since
                .as_ref()
                .is_some_and(|since| since.has_seen(modified_on, record))
            {
                continue;
            }
            Watermark::advance(&mut self.reached, modified_on, record);
            kept.push(change);
        }
        Ok(kept)
    }

    /// Turns the change-tracking failures that call for a full read into `ResyncRequired`.
    fn classify(&self, error: Error) -> Error {
        if self.base.mode != ReadMode::ChangeTracking {
            return error;
        }
        let table = &self.base.entity;
        let message = match error.service_code() {
            Some(code) if code.eq_ignore_ascii_case(EXPIRED_TOKEN) => format!(
                "the change-tracking token of `{table}` has expired (Dataverse {EXPIRED_TOKEN}); read the table again without the checkpoint and treat records missing from that read as deleted"
            ),
            Some(code) if code.eq_ignore_ascii_case(NOT_TRACKED) => format!(
                "`{table}` is not enabled for change tracking (Dataverse {NOT_TRACKED}); refresh its metadata and read it again without the checkpoint (auto mode then uses the modifiedon watermark), treating records missing from that read as deleted"
            ),
            _ => return error,
        };
        let mut resync = Error::new(ErrorKind::ResyncRequired, message)
            .with_service_error(
                error.service_code().map(str::to_owned),
                error.service_message().map(str::to_owned),
            )
            .with_request_id(error.request_id().map(str::to_owned));
        if let Some(status) = error.status() {
            resync = resync.with_status(status);
        }
        resync.with_source(error)
    }
}

/// A 64-bit hash of a link: enough to recognise it again without keeping its (long) text.
fn link_hash(url: &Url) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    url.as_str().hash(&mut hasher);
    hasher.finish()
}

/// The path and query of `url` without its paging and delta tokens.
fn without_tokens(url: &Url) -> String {
    let kept: Vec<&str> = url
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|part| {
            !part.is_empty() && !part.contains("skiptoken") && !part.contains("deltatoken")
        })
        .collect();
    if kept.is_empty() {
        url.path().to_owned()
    } else {
        format!("{}?{}", url.path(), kept.join("&"))
    }
}

fn describe_filter(filter: Option<&str>) -> String {
    filter.map_or_else(|| "(none)".to_owned(), |f| format!("`{f}`"))
}
