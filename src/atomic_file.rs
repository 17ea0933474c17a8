//! The one way segward writes a file: so that a reader (a sidecar watching its policy folder,
//! a TLS reload, an operator's browser) sees the old file or the new one, whole, and never a
//! half-written one, and so that the new file survives a crash. A temporary file in the same
//! folder, named with a leading `.` (the policy loader skips it), is written and fsynced, then
//! renamed over the target (or linked to it, for a file that must be new), and the folder is
//! fsynced so the new name is durable too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// How a file is written: replace or create-new, and its mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtomicWrite {
    /// Refuse to replace an existing file (`AlreadyExists`).
    create_new: bool,
    /// The file's mode; `None`: the default for new files (0666 less the umask).
    mode: Option<u32>,
}

impl AtomicWrite {
    /// Replaces the target if it exists, with the default mode.
    pub const fn new() -> Self {
        Self {
            create_new: false,
            mode: None,
        }
    }

    /// Refuses to replace a file of the target's name: the write fails with `AlreadyExists`
    /// and the existing file is left as it was.
    pub const fn create_new(self) -> Self {
        Self {
            create_new: true,
            ..self
        }
    }

    /// Creates the file with `mode` (0600 for a key: never readable by others, not even while
    /// it is being written).
    pub const fn mode(self, mode: u32) -> Self {
        Self {
            mode: Some(mode),
            ..self
        }
    }

    /// Writes `contents` as `path`, atomically and durably.
    ///
    /// # Errors
    /// The I/O error (`AlreadyExists` for a create-new write whose target exists); the
    /// temporary file is removed.
    pub fn write(self, path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
        let (dir, name) = split(path)?;
        if self.create_new && path.exists() {
            return Err(already_exists(path));
        }
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = self
            .write_temp(&temp, contents.as_ref())
            .and_then(|()| self.publish(&temp, path));
        // Best effort: the error returned is what matters; after a link the temp is spare.
        let _ = fs::remove_file(&temp);
        written?;
        File::open(dir)?.sync_all()
    }

    /// The temporary file, created with the mode, written and fsynced.
    fn write_temp(self, temp: &Path, contents: &[u8]) -> io::Result<()> {
        // A leftover of a crashed run would block `create_new`.
        let _ = fs::remove_file(temp);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        if let Some(mode) = self.mode {
            options.mode(mode);
        }
        let mut file = options.open(temp)?;
        file.write_all(contents)?;
        file.sync_all()
    }

    /// Gives the temporary file the target's name: a rename, or for a create-new write a hard
    /// link, which fails rather than replace a file that appeared meanwhile.
    fn publish(self, temp: &Path, path: &Path) -> io::Result<()> {
        if !self.create_new {
            return fs::rename(temp, path);
        }
        match fs::hard_link(temp, path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(already_exists(path)),
            other => other,
        }
    }
}

/// The folder (`.` for a bare name) and the file name of `path`.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_string_lossy().into_owned()))
}

fn already_exists(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} already exists", path.display()),
    )
}

#[cfg(test)]
mod tests;
