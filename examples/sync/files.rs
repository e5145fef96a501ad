//! The command's files: append-only JSON Lines files that hold whole lines only, the lock that
//! keeps two runs off the same files, and the checks made before anything is read.

use fs4::TryLockError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A failure to report: the exit code and the message.
pub type Failure = (i32, String);

/// A bad path: exit 2 with `flag`, the path and the reason.
fn bad_path(flag: &str, path: &Path, reason: impl std::fmt::Display) -> Failure {
    (
        super::EXIT_BAD_INPUT,
        format!("{flag} {}: {reason}", path.display()),
    )
}

/// A JSON Lines file opened for appending: a file, a device (`/dev/null`) or a named pipe.
///
/// On opening, a regular file whose last line was torn by a crash is cut back to its last whole
/// line (with a warning), so appended lines never join a broken one. `flush` writes the buffer
/// and, for a regular file, syncs it to disk; devices and pipes are not synced (they refuse).
pub struct LineFile {
    writer: BufWriter<File>,
    durable: bool,
}

impl LineFile {
    /// Opens (creating it when missing) the file at `path`, given as `flag`; a torn last line
    /// is cut off and said in `warnings`.
    pub fn append(flag: &str, path: &Path, warnings: &mut Vec<String>) -> Result<Self, Failure> {
        check_folder(flag, path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| bad_path(flag, path, format!("cannot be opened for appending ({e})")))?;
        let durable = file.metadata().is_ok_and(|m| m.is_file());
        if durable {
            let cut = cut_torn_line(&mut file).map_err(|e| {
                bad_path(flag, path, format!("its last line cannot be checked ({e})"))
            })?;
            if cut > 0 {
                warnings.push(format!(
                    "{flag} {}: cut off a torn last line of {cut} bytes, left by a run that was stopped while writing",
                    path.display()
                ));
            }
        }
        Ok(Self {
            writer: BufWriter::new(file),
            durable,
        })
    }
}

impl Write for LineFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.writer.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()?;
        if self.durable {
            self.writer.get_ref().sync_data()?;
        }
        Ok(())
    }
}

/// Cuts `file` back to just after its last line break (to nothing when it has none), unless it
/// is empty or ends with one; returns how many bytes were cut.
fn cut_torn_line(file: &mut File) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let length = file.metadata()?.len();
    let mut end = length;
    let mut buffer = vec![0; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buffer[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    if end < length {
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(length - end)
}

/// Refuses a path whose folder does not exist or is not a folder.
pub fn check_folder(flag: &str, path: &Path) -> Result<(), Failure> {
    let folder = folder_of(path);
    match fs::metadata(folder) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(bad_path(
            flag,
            path,
            format!("{} is not a folder", folder.display()),
        )),
        Err(e) => Err(bad_path(
            flag,
            path,
            format!(
                "its folder {} cannot be used ({e}); create it or choose another path",
                folder.display()
            ),
        )),
    }
}

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Refuses a path that cannot be written, changing nothing: an existing file must open for
/// appending, and a new one's folder must take a file (a probe, removed at once).
pub fn check_writable(flag: &str, path: &Path) -> Result<(), Failure> {
    check_folder(flag, path)?;
    if path.exists() {
        return OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| bad_path(flag, path, format!("cannot be written ({e})")));
    }
    let probe = sibling(path, &format!(".probe-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            bad_path(
                flag,
                path,
                format!(
                    "no file can be created in {} ({e})",
                    folder_of(path).display()
                ),
            )
        })?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The lock of one run on its files: `<file>.lock`, holding the run's process id under an
/// advisory lock that the system releases when the process ends however it ends. Removed when
/// dropped.
pub struct RunLock {
    path: PathBuf,
    // Holds the advisory lock while open.
    _file: File,
}

impl RunLock {
    /// Takes the lock beside `path` (given as `flag`). Another live run holding it is refused
    /// with exit 2, naming its process id; a lock file left by a run that died is taken over,
    /// with a warning.
    pub fn take(flag: &str, path: &Path, warnings: &mut Vec<String>) -> Result<Self, Failure> {
        check_folder(flag, path)?;
        let lock = sibling(path, ".lock");
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock)
                .map_err(|e| {
                    bad_path(
                        flag,
                        path,
                        format!("its lock file {} cannot be opened ({e})", lock.display()),
                    )
                })?;
            let mut holder = String::new();
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let _ = file.read_to_string(&mut holder);
                    return Err(bad_path(
                        flag,
                        path,
                        format!(
                            "another sync (process {}) is using it (lock file {}); wait for that run to end, or give this run other files",
                            holder.trim(),
                            lock.display()
                        ),
                    ));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(bad_path(
                        flag,
                        path,
                        format!("its lock file {} cannot be locked ({e})", lock.display()),
                    ));
                }
            }
            // The run that held it may have removed the file meanwhile: lock the current one.
            if !is_same_file(&file, &lock) {
                continue;
            }
            file.read_to_string(&mut holder)
                .and_then(|_| claim(&mut file))
                .map_err(|e| {
                    bad_path(
                        flag,
                        path,
                        format!("its lock file {} cannot be written ({e})", lock.display()),
                    )
                })?;
            if !holder.trim().is_empty() {
                warnings.push(format!(
                    "took over the lock file {} of process {}, which ended without removing it",
                    lock.display(),
                    holder.trim()
                ));
            }
            return Ok(Self {
                path: lock,
                _file: file,
            });
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked; the lock goes with the file handle just after.
        let _ = fs::remove_file(&self.path);
    }
}

/// Replaces the lock file's content with this process's id.
fn claim(file: &mut File) -> io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    write!(file, "{}", std::process::id())?;
    file.sync_data()
}

/// Whether the open `file` is still the one at `path`.
#[cfg(unix)]
fn is_same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether the open `file` is still the one at `path` (elsewhere: whether a file is there).
#[cfg(not(unix))]
fn is_same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}
