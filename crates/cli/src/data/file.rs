//! Reading a whole data file, with the checks every reader needs before it opens one.

use std::path::Path;

use super::{DataError, Result};

/// The bytes of the data file at `path`. What is not a regular file is refused before it is
/// opened: reading a FIFO would block until something writes to it, and a directory cannot be
/// read. Errors name the file (as `shown`).
pub fn read_data_file(path: &Path, shown: &str) -> Result<Vec<u8>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(DataError::new(shown, "is a directory, not a file")),
        Ok(m) if !m.is_file() => {
            return Err(DataError::new(
                shown,
                "is not a regular file (a FIFO or device?)",
            ));
        }
        _ => {}
    }
    std::fs::read(path).map_err(|e| DataError::new(shown, format!("cannot read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.bin");
        std::fs::write(&f, [1u8, 2, 3]).unwrap();
        assert_eq!(read_data_file(&f, "x.bin").unwrap(), [1, 2, 3]);
        let e = read_data_file(dir.path(), "d").unwrap_err().to_string();
        assert!(e.starts_with("d: is a directory"), "{e}");
        let e = read_data_file(&dir.path().join("none"), "none").unwrap_err();
        assert!(e.to_string().starts_with("none: cannot read"), "{e}");
        #[cfg(unix)]
        {
            // Refused without opening it: opening a FIFO for reading would block forever.
            let fifo = dir.path().join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            assert!(made.is_ok_and(|s| s.success()), "mkfifo");
            let e = read_data_file(&fifo, "fifo").unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
    }
}
