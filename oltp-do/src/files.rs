//! Tenant directories on local disk: how much of the disk one takes, and
//! copying files so that their all-zero blocks take none.
//!
//! A PostgreSQL data directory is mostly zero pages when young: its WAL
//! segment is 16 MiB of which a new tenant has written a few KiB. Tenants
//! run with `wal_init_zero=off`, so the segments they make are sparse;
//! copies of the template leave zero blocks as holes, and archives keep
//! holes (tar's sparse entries, both ways). Sizes are what the files take on
//! disk (as `du` counts), so a tenant's listed size and the disk budget see
//! the disk, not file lengths.

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// The block size holes are made of (PostgreSQL's page size).
const BLOCK: usize = 8192;
static ZEROS: [u8; BLOCK] = [0; BLOCK];

/// Copy the file `from` to a new file `to` with its permissions, leaving
/// every all-zero 8 KiB block as a hole (reads of a hole return zeros).
pub fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    let data = fs::read(from)?;
    let file = fs::File::create(to)?;
    let mut run_start: Option<usize> = None;
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let zero = block == &ZEROS[..block.len()];
        match (zero, run_start) {
            (false, None) => run_start = Some(i * BLOCK),
            (true, Some(start)) => {
                file.write_all_at(&data[start..i * BLOCK], start as u64)?;
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run_start {
        file.write_all_at(&data[start..], start as u64)?;
    }
    file.set_len(data.len() as u64)?;
    file.set_permissions(fs::metadata(from)?.permissions())
}

/// Bytes the directory tree at `path` takes on disk: the blocks allocated
/// to it and everything under it, symbolic links not followed (what
/// `du --block-size=1 -s` prints). 0 if it does not exist.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    let Ok(entries) = fs::read_dir(path) else {
        return own;
    };
    own + entries.flatten().map(|entry| disk_usage(&entry.path())).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn zero_blocks_become_holes_and_read_back_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB: a written block, zeros, a written block, a zero tail.
        let mut data = vec![0u8; 1 << 20];
        data[..BLOCK].fill(7);
        data[64 * BLOCK + 10] = 1;
        let path = dir.path().join("segment");
        fs::write(&path, &data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let dense = disk_usage(&path);
        assert!(dense >= 1 << 20, "written out: {dense} bytes");

        let copy = dir.path().join("copy");
        copy_sparse(&path, &copy).unwrap();
        assert_eq!(fs::read(&copy).unwrap(), data);
        assert_eq!(fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
        let used = disk_usage(&copy);
        assert!(used < 64 * 1024, "two written blocks take {used} bytes");
        assert!(disk_usage(dir.path()) >= dense + used);
        assert_eq!(disk_usage(&dir.path().join("missing")), 0);
    }
}
