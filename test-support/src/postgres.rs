//! One PostgreSQL server per test process, one fresh database per test.
//!
//! The server is Debian's `postgresql` package run from a temporary folder: `initdb`, then
//! `postgres` on 127.0.0.1 and a free port, trusting local connections, with `fsync` off. As
//! root (CI, the development machines) both run as the `postgres` system user, since PostgreSQL
//! refuses to run as root; anyone else runs them as themselves.
//!
//! Stopping it: the server is started by a small `sh` watchdog whose standard input is a pipe
//! from the test process. The test process never writes to it, so the watchdog's `read` returns
//! only at end-of-file, when the test process has ended — normally, by a panic, or by SIGKILL
//! alike, since the kernel closes the pipe in every case. The watchdog then stops the server by
//! the pid it started (`kill -QUIT`, immediate shutdown) and removes the folder. Rejected:
//! `PR_SET_PDEATHSIG` on the server, which needs `unsafe` (the workspace forbids it), fires when
//! the spawning *thread* ends rather than the process, and leaves the folder behind.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `$0` the `postgres` program, `$1` the folder, `$2` the port. See the module comment. Without
/// fsync (only an operating-system crash would lose data) but with synchronous commits: a
/// killed server keeps every transaction it acknowledged, as a real one does. The server is
/// also supervised: killed (the soak's fault), it starts again on the same folder
/// and port after crash recovery, until the watchdog stops it.
const WATCHDOG: &str = r#"
(
  while [ ! -e "$1/stopping" ]; do
    "$0" -D "$1/data" -p "$2" -k "$1" -c listen_addresses=127.0.0.1 -c fsync=off \
        -c full_page_writes=off -c max_connections=300 >>"$1/server.log" 2>&1
    sleep 0.2
  done
) &
supervisor=$!
while read -r _; do :; done
touch "$1/stopping"
# The supervisor may be starting a new server just now: stop whichever runs until it is done.
while kill -0 "$supervisor" 2>/dev/null; do
  kill -QUIT "$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null)" 2>/dev/null
  sleep 0.1
done
wait "$supervisor"
rm -rf "$1"
"#;

/// How long the server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(60);

static SERVER: OnceLock<Result<Postgres, String>> = OnceLock::new();
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

/// A running PostgreSQL server owned by this test process. It accepts user `postgres` without a
/// password on `127.0.0.1:<port>`. Shared by every test of the process; each test takes its own
/// database with [`Postgres::fresh_database`].
pub struct Postgres {
    port: u16,
    bindir: PathBuf,
    dir: PathBuf,
    /// Held open for the life of the process: its end-of-file stops the server.
    _watchdog: Child,
}

/// A new empty database on this process's server: its URL (`postgres://…`).
///
/// Panics with the reason when PostgreSQL cannot be started, binaries missing included: a test
/// that needs PostgreSQL fails rather than skips.
pub fn fresh_database() -> String {
    Postgres::shared().fresh_database()
}

impl Postgres {
    /// This process's server, started by the first call (which blocks a second or two).
    /// Panics with the reason when it cannot be started; later calls panic the same way.
    pub fn shared() -> &'static Postgres {
        match SERVER.get_or_init(Postgres::start) {
            Ok(server) => server,
            Err(reason) => panic!("PostgreSQL for the tests: {reason}"),
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A PostgreSQL program of the server's installation (`psql`, `pg_dump`, …).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// Kills the server with SIGKILL, as a crash would; the watchdog starts it again, and it
    /// accepts connections once its crash recovery is done. Every test of the process loses
    /// its connections: only a test process of its own (the soak) should call this.
    pub fn kill_server(&self) {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap_or_default();
        let pid = pid.lines().next().unwrap_or_default().trim().to_owned();
        assert!(!pid.is_empty(), "no postmaster.pid: is the server running?");
        let status = Command::new("kill").args(["-KILL", &pid]).status().expect("running kill");
        assert!(status.success(), "kill -KILL {pid}");
    }

    /// Whether the server accepts connections now.
    pub fn is_ready(&self) -> bool {
        Command::new(self.program("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Creates a new empty database, named `t_<pid>_<n>`, and returns its URL.
    /// Panics with `createdb`'s message if that fails.
    pub fn fresh_database(&self) -> String {
        let name = format!("t_{}_{}", std::process::id(), NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
        let port = self.port.to_string();
        let out = Command::new(self.program("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &name])
            .output()
            .unwrap_or_else(|e| panic!("running createdb: {e}"));
        assert!(out.status.success(), "createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        self.url(&name)
    }

    fn start() -> Result<Postgres, String> {
        let bindir = bindir()?;
        let user = server_user()?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("warden-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let started = Self::start_in(&bindir, user, &dir);
        if started.is_err() {
            // Without a watchdog nobody else removes it; with one, this races it harmlessly.
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    fn start_in(bindir: &Path, user: Option<(u32, u32)>, dir: &Path) -> Result<Postgres, String> {
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .map_err(|e| format!("handing {} to the postgres user: {e}", dir.display()))?;
        }
        let data = dir.join("data");
        let out = as_server_user(Command::new(bindir.join("initdb")), user, dir)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = crate::free_port();
        let mut watchdog = as_server_user(Command::new("sh"), user, dir)
            .arg("-c")
            .arg(WATCHDOG)
            .arg(bindir.join("postgres"))
            .arg(dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C at the terminal reaches the test process only, whose
            // end then stops the server in order (and removes the folder).
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting the PostgreSQL watchdog (sh): {e}"))?;
        let deadline = Instant::now() + STARTUP;
        loop {
            let ready = Command::new(bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .status()
                .map_err(|e| format!("running pg_isready: {e}"))?;
            if ready.success() {
                return Ok(Postgres { port, bindir: bindir.to_owned(), dir: dir.to_owned(), _watchdog: watchdog });
            }
            let log = read_log(&dir.join("server.log"));
            let exited = watchdog.try_wait().ok().flatten().is_some();
            // Connecting while it starts logs a FATAL "starting up"; any other FATAL is final.
            let fatal = log.lines().any(|l| l.contains("FATAL") && !l.contains("starting up"));
            if exited || fatal || Instant::now() > deadline {
                return Err(format!("the server did not start on port {port}; its log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Where `initdb` and `postgres` are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian keeps them off `PATH`), else `PATH`.
fn bindir() -> Result<PathBuf, String> {
    find_bindir("pg_config", Path::new("/usr/lib/postgresql"), &std::env::var_os("PATH").unwrap_or_default())
}

fn find_bindir(pg_config: &str, debian: &Path, path: &std::ffi::OsStr) -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new(pg_config).arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((major, bin))
        })
        .collect();
    installed.sort();
    if let Some((_, bin)) = installed.pop() {
        return Ok(bin);
    }
    std::env::split_paths(path).find(|dir| has_server(dir)).ok_or_else(|| {
        "PostgreSQL's server programs (initdb, postgres) were not found via `pg_config --bindir`, in \
         /usr/lib/postgresql/*/bin or on PATH; install Debian's `postgresql` package (`make tools` does)"
            .to_owned()
    })
}

/// As root, the `postgres` system user's (uid, gid); otherwise `None`: run as ourselves.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // /proc/self belongs to the process's effective user; no libc call (and no `unsafe`) needed.
    let me = std::fs::metadata("/proc/self").map_err(|e| format!("reading /proc/self: {e}"))?.uid();
    if me != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields[..] {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .map(Some)
        .ok_or_else(|| {
            "running as root, and PostgreSQL refuses root, but there is no `postgres` user to run it as \
             (Debian's `postgresql` package creates one)"
                .to_owned()
        })
}

/// `command`, run as `user` when given, from `dir` (the user may not be allowed into ours).
fn as_server_user(mut command: Command, user: Option<(u32, u32)>, dir: &Path) -> Command {
    if let Some((uid, gid)) = user {
        // std drops the supplementary groups too when changing the uid.
        command.uid(uid).gid(gid);
    }
    command.current_dir(dir);
    command
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_debian_installation_wins_and_none_is_a_clear_error() {
        let root = std::env::temp_dir().join(format!("warden-pg-bindir-{}", std::process::id()));
        for major in ["9", "15", "notes"] {
            let bin = root.join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("initdb"), "").unwrap();
            std::fs::write(bin.join("postgres"), "").unwrap();
        }
        let empty = std::ffi::OsStr::new("");
        let found = find_bindir("no-such-pg_config", &root, empty);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found, Ok(root.join("15").join("bin")));
        let missing = find_bindir("no-such-pg_config", &root, empty).unwrap_err();
        assert!(missing.contains("install Debian's `postgresql` package"), "{missing}");
    }

    #[test]
    fn a_fresh_database_accepts_queries_and_each_is_new() {
        let server = Postgres::shared();
        let (a, b) = (server.fresh_database(), server.fresh_database());
        assert_ne!(a, b);
        let out =
            Command::new(server.program("psql")).args([a.as_str(), "-tAc", "SELECT current_user"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres");
    }
}
