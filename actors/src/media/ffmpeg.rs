//! ffmpeg as a subprocess: the remux of RTMP ingest to MPEG-TS and of the output to FLV, as
//! go-livepeer runs it (§3.4). A process is killed when its handle is dropped and reaped when it
//! is finished; the last lines of its stderr are kept (bounded) to say why it failed.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// stderr lines kept per process.
const TAIL_LINES: usize = 8;
/// Longest stderr line kept.
const TAIL_LINE_BYTES: usize = 300;

/// A running ffmpeg.
#[derive(Debug)]
pub struct Ffmpeg {
    child: Child,
    /// Its stdin (taken by the writer).
    pub stdin: Option<ChildStdin>,
    /// Its stdout (taken by the reader), when piped.
    pub stdout: Option<ChildStdout>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Ffmpeg {
    /// Starts `program` with `args`, stdin piped, stdout piped when `stdout`.
    pub fn spawn(program: &str, args: &[String], stdout: bool) -> std::io::Result<Self> {
        let mut child = Command::new(program)
            .args(["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(if stdout { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(mut line)) = lines.next_line().await {
                    let mut n = TAIL_LINE_BYTES.min(line.len());
                    while !line.is_char_boundary(n) {
                        n -= 1;
                    }
                    line.truncate(n);
                    let mut t = tail.lock();
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        Ok(Self { stdin: child.stdin.take(), stdout: child.stdout.take(), child, tail })
    }

    /// The last lines it wrote to stderr.
    pub fn tail(&self) -> String {
        self.tail.lock().iter().cloned().collect::<Vec<_>>().join(" | ")
    }

    /// Whether it has exited (and then how), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Closes its stdin and waits for it to exit at most `wait`, then kills it; always reaped.
    pub async fn finish(mut self, wait: Duration) -> Option<ExitStatus> {
        drop(self.stdin.take());
        match tokio::time::timeout(wait, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.child.start_kill();
                self.child.wait().await.ok()
            }
        }
    }
}
