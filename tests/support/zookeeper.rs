//! Real ZooKeeper clients and a real ZooKeeper server, for tests of the ZooKeeper front
//! end: `mason local --serve` in its own process group, Apache ZooKeeper 3.8 (Debian's
//! `zookeeper` package) on a free loopback port, and kazoo scripts (Debian's
//! `python3-kazoo`). `.ci/run` installs both packages.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `mason local --system <system> --serve ...`, running until [`Serving::stop`].
pub struct Serving {
    child: Child,
    pub addrs: Vec<SocketAddr>,
    stopped: bool,
    pub out: PathBuf,
}

impl Serving {
    /// Starts it and waits (at most 60 s) for its `serving zookeeper on ...` line.
    pub fn start(system: &str, extra: &[&str], out: &Path) -> Serving {
        Serving::start_env(system, extra, out, &[])
    }

    /// As [`Serving::start`], with these environment variables (fault injection).
    pub fn start_env(system: &str, extra: &[&str], out: &Path, env: &[(&str, &str)]) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mason"))
            .args(["local", "--system", system, "--serve", "--out"])
            .arg(out)
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting mason local --serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            // Keep reading so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let mut s = Serving {
            child,
            addrs: Vec::new(),
            stopped: false,
            out: out.to_path_buf(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("mason local --serve said where it serves within 60 s");
        let list = line
            .strip_prefix("serving zookeeper on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        s.addrs = list
            .split(',')
            .map(|a| a.parse().expect("an address"))
            .collect();
        s
    }

    /// The pid of the front end listening on `addr`: a child of `mason local` (which this
    /// test started) whose command line has `--listen addr`.
    pub fn gateway_pid(&self, addr: SocketAddr) -> Option<i32> {
        let parent = self.child.id().to_string();
        let listen = addr.to_string();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The fields after the command's closing parenthesis: state, ppid, ...
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1));
            if ppid != Some(parent.as_str()) {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            let gateway = args.iter().any(|a| *a == b"zk-gateway".as_slice());
            let mine = gateway
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--listen".as_slice() && w[1] == listen.as_bytes());
            if mine {
                return Some(pid);
            }
        }
        None
    }

    /// `host:port,host:port` for a client's connect string.
    pub fn hosts(&self) -> String {
        self.addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Sends `signal` to `mason local` and waits (at most 30 s) for it to stop every
    /// process and exit; returns its exit code.
    pub fn stop(&mut self, signal: i32) -> Option<i32> {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the pid of a child this test started.
            unsafe {
                libc::kill(pid, signal);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.stopped = true;
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "mason local --serve did not stop within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if !self.stopped {
            super::cluster::kill_group(&self.child);
            let _ = self.child.wait();
        }
    }
}

/// Debian's ZooKeeper server jar: its manifest's Class-Path names its dependencies.
const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

/// A standalone Apache ZooKeeper on a free loopback port, in a temporary data directory;
/// SIGKILLed (by pid) when dropped.
pub struct RealZooKeeper {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RealZooKeeper {
    pub fn start() -> RealZooKeeper {
        let dir = tempfile::Builder::new()
            .prefix("mason-it-zookeeper-")
            .tempdir()
            .expect("a temporary directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=*\n",
                data.display()
            ),
        )
        .expect("zoo.cfg");
        assert!(
            Path::new(ZK_JAR).exists(),
            "Apache ZooKeeper is not installed (Debian: apt-get install zookeeper; .ci/run does)"
        );
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
        let child = Command::new("java")
            .args(["-cp", ZK_JAR])
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting java (ZooKeeper)");
        let z = RealZooKeeper {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while four_letter(addr, "ruok").as_deref() != Some("imok") {
            assert!(
                Instant::now() < deadline,
                "ZooKeeper did not answer ruok within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        z
    }
}

impl Drop for RealZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A four-letter word's answer, or `None` if the server could not be asked.
pub fn four_letter(addr: SocketAddr, word: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(word.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The Python that has kazoo (Debian's `python3-kazoo` lives in /usr/bin/python3's
/// path).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs the kazoo script `script` (under tests/zk/) with `args`, within `timeout`;
/// returns its stdout, failing the test (with its stderr) if it fails.
pub fn kazoo(script: &str, args: &[&str], timeout: Duration) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/zk")
        .join(script);
    let mut child = Command::new(python())
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting python3");
    let out = super::cluster::spawn_reader(child.stdout.take().expect("stdout"));
    let err = super::cluster::spawn_reader(child.stderr.take().expect("stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for python3") {
            break st;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{script} {args:?} still running after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    assert!(
        status.success(),
        "{script} {args:?} failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}
