//! The local control socket: `<data dir>/agent.sock`, owner-only (0600 in a 0700 directory), one
//! JSON [`ControlRequest`] per line in, one [`ControlResponse`] per line out. It lets a command
//! on the same machine (`flightdeck-agent decide` and `pending`, and `flightdeck-agent hook` run
//! by Claude Code's hooks) reach the agent that runs the tasks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flightdeck_protocol::desktop::{error_codes, CommandError};
use flightdeck_protocol::local::{ControlRequest, ControlResponse};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::Inner;

/// The socket's file name in the data directory.
pub const SOCKET: &str = "agent.sock";
/// The longest request line accepted (a hook carries a tool's whole input: a file to write).
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// A client that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(10);

/// The socket path for a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Binds the socket (replacing a stale one no agent listens on) and serves it until `stop`.
/// A live socket of another agent on the same data dir is left alone: this agent then serves
/// none (its tasks are decided from the desktop or the relay).
pub(super) fn serve(inner: Arc<Inner>, stop: CancellationToken) {
    let path = socket_path(&inner.data_dir);
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        tracing::warn!(path = %path.display(), "another agent serves this data directory's control socket");
        return;
    }
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "cannot open the control socket");
            return;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(inner.clone(), stream));
                    }
                    Err(err) => tracing::warn!(%err, "control socket accept"),
                },
            }
        }
        let _ = std::fs::remove_file(&path);
    });
}

async fn answer(inner: Arc<Inner>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE as u64));
    let response = match tokio::time::timeout(IDLE, reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => match serde_json::from_str::<ControlRequest>(line.trim()) {
            Ok(ControlRequest::Decide { request }) => match inner.decide(request).await {
                Ok(task) => ControlResponse::Task { task },
                Err(e) => ControlResponse::Error { error: e.to_command_error() },
            },
            Ok(ControlRequest::Pending) => match inner.pending().await {
                Ok(requests) => ControlResponse::Pending { requests },
                Err(e) => ControlResponse::Error { error: e.to_command_error() },
            },
            Ok(ControlRequest::Hook { input }) => ControlResponse::Hook { decision: inner.external.hook(input).await },
            Err(e) => ControlResponse::Error {
                error: CommandError { code: error_codes::INVALID_INPUT.into(), message: format!("bad request: {e}") },
            },
        },
        _ => return,
    };
    let mut out = serde_json::to_string(&response).unwrap_or_default();
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
}

/// Sends one request to the agent serving `data_dir` and waits for its answer.
pub async fn request(data_dir: &Path, request: &ControlRequest) -> std::io::Result<ControlResponse> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("no agent runs with the data directory {} ({e})", data_dir.display()))
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    serde_json::from_str(answer.trim()).map_err(std::io::Error::other)
}
