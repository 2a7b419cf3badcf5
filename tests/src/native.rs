//! Native PostgreSQL beside tidelake (the benchmarks' competitor, the
//! test suite's oracle): Debian's binaries on a free loopback port, with data directories, socket and log in a work
//! directory, run as the `postgres` user when the benchmark runs as root
//! (PostgreSQL refuses to run as root).
//! Errors are `io::Error`s saying what failed.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::io::{Error, Result};

pub struct NativePg {
    bin: PathBuf,
    work: PathBuf,
    port: u16,
}

impl NativePg {
    /// A server of the binaries in `bin`, working in `work` (created).
    pub fn new(bin: &Path, work: &Path) -> Result<Self> {
        std::fs::create_dir_all(work)?;
        chown_postgres(work)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Ok(Self { bin: bin.to_path_buf(), work: work.to_path_buf(), port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// One of PostgreSQL's programs, run as its user.
    pub fn program(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    pub fn initdb(&self, data: &Path) -> Result<()> {
        run_ok(self.program("initdb").arg("-D").arg(data).args(["-A", "trust", "-U", "postgres"]))
    }

    /// Start the cluster in `data` and wait until it accepts connections.
    pub fn start(&self, data: &Path) -> Result<()> {
        run_ok(self.program("pg_ctl").arg("-D").arg(data).arg("-l").arg(self.work.join("log")).args([
            "-w",
            "-t",
            "600",
            "-o",
            &format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.work.display()),
            "start",
        ]))
    }

    pub fn stop(&self, data: &Path) -> Result<()> {
        run_ok(self.program("pg_ctl").arg("-D").arg(data).args(["-m", "fast", "-w", "stop"]))
    }

    /// Run one statement with `psql`; its output, unaligned, without headers.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_in("postgres", sql)
    }

    /// `psql` as above, in database `database`.
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", database, "-c", sql])
            .output()
            .map_err(|e| Error::other(format!("run psql: {e}")))?;
        if !out.status.success() {
            return Err(Error::other(format!("psql: {}", String::from_utf8_lossy(&out.stderr))));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

pub fn run_ok(command: &mut Command) -> Result<()> {
    let out = command.output().map_err(|e| Error::other(format!("run {command:?}: {e}")))?;
    if !out.status.success() {
        return Err(Error::other(format!("{command:?} failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

/// Give a directory to the `postgres` user (when running as root).
pub fn chown_postgres(path: &Path) -> Result<()> {
    if is_root() {
        run_ok(Command::new("chown").args(["-R", "postgres"]).arg(path))?;
    }
    Ok(())
}

/// The newest of Debian's PostgreSQL installations (`/usr/lib/postgresql/<version>/bin`).
pub fn debian_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}
