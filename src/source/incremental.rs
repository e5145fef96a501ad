//! One read in progress: following links, the `modifiedon` watermark, change-tracking
//! outcomes.

use super::MODIFIED_ON;
use super::checkpoint::{Checkpoint, Position, ReadMode, Watermark};
use super::decode::{DecodedPage, RecordDecoder};
use super::page::{Page, RecordChange};
use super::start::{FirstRequest, SequentialStart};
use crate::client::{DataverseClient, Prefer};
use crate::error::{Error, ErrorKind, Result};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

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
    /// The URL of the next page, exactly as the server wrote it (it is sent as written).
    next: Option<String>,
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
            .field("next", &self.next.as_deref().map(without_tokens))
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader ready to send the first request of `start`: its query made a URL under the
    /// Web API base, or its checkpoint link checked to be the instance's (refused with a
    /// [`Protocol`](ErrorKind::Protocol) error otherwise). Sends nothing.
    pub fn new(
        client: DataverseClient,
        decoder: RecordDecoder,
        prefer: Prefer,
        base: Checkpoint,
        start: SequentialStart,
    ) -> Result<Self> {
        let first = match start.first {
            FirstRequest::Query(path) => client.web_api_url(&path)?.into(),
            FirstRequest::Link { link, what } => {
                client.exact_url(&link, what)?;
                link
            }
        };
        Ok(Self {
            client,
            decoder,
            prefer,
            base,
            followed: HashSet::from([link_hash(&first)]),
            next: Some(first),
            pages: start.pages,
            since: start.since,
            reached: start.reached,
        })
    }

    /// Fetches, decodes and returns the next page. Only called while a page is due.
    pub async fn next_page(&mut self) -> Result<Page> {
        let url = self
            .next
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Protocol, "the read has already finished"))?;
        let number = self.pages + 1;
        let (decoded, preference_applied) = self.fetch(&url, number).await?;
        let mut changes = decoded.changes;
        if self.base.mode == ReadMode::ModifiedOn {
            changes = self.apply_watermark(changes, number)?;
        }
        let position = match decoded.next_link {
            Some(link) => self.follow(link, &url, number)?,
            None => self.end(decoded.delta_link, preference_applied.as_deref(), number)?,
        };
        self.pages = number;
        Ok(Page {
            changes,
            checkpoint: Checkpoint {
                position,
                ..self.base.clone()
            },
            number,
            last: self.next.is_none(),
            counts: decoded.counts,
        })
    }

    /// GETs page `number` at `url` and decodes it, dropping the body; with the server's
    /// `Preference-Applied`.
    async fn fetch(&self, url: &str, number: u32) -> Result<(DecodedPage, Option<String>)> {
        let response = self
            .client
            .get(url, &self.prefer)
            .await
            .map_err(|e| self.classify(e))?;
        let decoded = self.decoder.decode_page(&response.body).map_err(|e| {
            Error::decode(format!(
                "page {number} of `{}` could not be decoded: {e}",
                self.base.entity
            ))
        })?;
        Ok((decoded, response.preference_applied))
    }

    /// Takes the next link of page `number` (fetched from `url`) as the next page, refusing
    /// one that leaves the instance or leads back to a page already requested.
    fn follow(&mut self, link: String, url: &str, number: u32) -> Result<Position> {
        self.client
            .exact_url(&link, &format!("next link of page {number}"))?;
        if !self.followed.insert(link_hash(&link)) {
            let whither = if link == url {
                "to itself as its next page"
            } else {
                "back to a page this read already requested"
            };
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "page {number} of `{}` links {whither} (`{}`); stopped instead of reading the same pages forever",
                    self.base.entity,
                    without_tokens(&link)
                ),
            ));
        }
        self.next = Some(link.clone());
        Ok(Position::Reading {
            next_link: link,
            pages: number,
            since: self.since.clone(),
            reached: self.reached.clone(),
        })
    }

    /// Where the read stands after its last page, `number`: for change tracking, at the delta
    /// link that page carried (checked to be the instance's).
    fn end(
        &self,
        delta_link: Option<String>,
        preference_applied: Option<&str>,
        number: u32,
    ) -> Result<Position> {
        match self.base.mode {
            ReadMode::ChangeTracking => {
                let link = delta_link.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Protocol,
                        format!(
                            "the change-tracking read of `{}` ended without a delta link (Preference-Applied: {}); the table may not be enabled for change tracking: refresh its metadata and read again",
                            self.base.entity,
                            preference_applied.unwrap_or("none")
                        ),
                    )
                })?;
                self.client
                    .exact_url(&link, &format!("delta link of page {number}"))?;
                Ok(Position::Delta { delta_link: link })
            }
            ReadMode::ModifiedOn => Ok(Position::Watermark {
                watermark: self.reached.clone(),
            }),
            ReadMode::Full | ReadMode::Auto => Ok(Position::Complete),
        }
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

/// A 64-bit hash of a link: enough to recognise it again without keeping its (long) text. The
/// URL standard's form is hashed, so that `'` and `%27` name the same page.
fn link_hash(link: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match url::Url::parse(link) {
        Ok(url) => url.as_str().hash(&mut hasher),
        Err(_) => link.hash(&mut hasher),
    }
    hasher.finish()
}

/// The path and query of `link` without its paging and delta tokens.
fn without_tokens(link: &str) -> String {
    let (address, query) = link.split_once('?').unwrap_or((link, ""));
    let path = url::Url::parse(address).map_or_else(|_| String::new(), |u| u.path().to_owned());
    let kept: Vec<&str> = query
        .split('&')
        .filter(|part| {
            !part.is_empty() && !part.contains("skiptoken") && !part.contains("deltatoken")
        })
        .collect();
    if kept.is_empty() {
        path
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}
