//! Child processes that cannot outlive the test run.
//!
//! Every control-plane process is started in its own process group with
//! `PR_SET_PDEATHSIG`, so the kernel kills it when the test binary dies, even
//! by SIGKILL or a harness timeout. Because the death signal follows the
//! *thread* that spawned the child, all spawns happen on one keeper thread that
//! lives as long as the process. Groups still running at a normal exit (the test
//! harness returning after a panicking test, say) are stopped by an `atexit`
//! hook, which also removes their state directories.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

fn keeper() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("msp-testenv-keeper".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
                // All senders gone: park forever so that children keep living
                // until the process itself exits.
                loop {
                    std::thread::park();
                }
            })
            .expect("cannot start the msp-testenv keeper thread");
        // The keeper must never see its channel close while children live.
        Mutex::new(tx)
    })
}

/// Spawns `command` in a new process group, killed when this process dies.
pub fn spawn_guarded(mut command: Command) -> io::Result<Child> {
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    keeper()
        .lock()
        .map_err(|_| io::Error::other("keeper lock poisoned"))?
        .send((command, tx))
        .map_err(|_| io::Error::other("keeper thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("keeper thread is gone"))?
}

/// Sends `signal` to the process group led by `pid`.
pub fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: plain syscall; a stale pid yields ESRCH, which we ignore.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
    }
}

/// Stops a child's process group: SIGTERM, then SIGKILL after `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal_group(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_group(child.id(), libc::SIGKILL);
    let _ = child.wait();
}

/// What the exit hook must clean up for one control plane.
#[derive(Default)]
struct Registration {
    pids: Vec<u32>,
    dir: Option<PathBuf>,
}

fn registry() -> &'static Mutex<HashMap<u64, Registration>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Registration>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        extern "C" fn at_exit() {
            let Ok(mut registry) = registry().lock() else {
                return;
            };
            for (_, registration) in registry.drain() {
                for pid in registration.pids.iter().rev() {
                    signal_group(*pid, libc::SIGTERM);
                }
                // Reap what we started: a child left unreaped would linger as a
                // zombie under a PID 1 that does not reap orphans.
                let deadline = Instant::now() + Duration::from_secs(3);
                let mut running = registration.pids.clone();
                while !running.is_empty() && Instant::now() < deadline {
                    running.retain(|pid| !reaped(*pid));
                    std::thread::sleep(Duration::from_millis(20));
                }
                for pid in running {
                    signal_group(pid, libc::SIGKILL);
                    // SAFETY: waiting for our own child; no memory is shared.
                    unsafe {
                        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
                    }
                }
                if let Some(dir) = registration.dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe {
            libc::atexit(at_exit);
        }
        Mutex::new(HashMap::new())
    })
}

/// True when child `pid` has exited and is now reaped (or is not our child).
fn reaped(pid: u32) -> bool {
    // SAFETY: non-blocking wait for our own child.
    let result = unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
    result != 0
}

/// Records a process group (and optionally a directory to remove) under `id`.
pub fn register(id: u64, pid: u32, dir: Option<PathBuf>) {
    if let Ok(mut registry) = registry().lock() {
        let entry = registry.entry(id).or_default();
        entry.pids.push(pid);
        if dir.is_some() {
            entry.dir = dir;
        }
    }
}

/// Forgets process group `pid` under `id` (it was killed and reaped).
pub fn unregister_pid(id: u64, pid: u32) {
    if let Ok(mut registry) = registry().lock()
        && let Some(entry) = registry.get_mut(&id)
    {
        entry.pids.retain(|p| *p != pid);
    }
}

/// Forgets everything recorded under `id` (it was stopped explicitly).
pub fn unregister(id: u64) {
    if let Ok(mut registry) = registry().lock() {
        registry.remove(&id);
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from
/// `/proc/<pid>/stat`; 0 when it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 (1-based); after ")" they are 12 and 13.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}
