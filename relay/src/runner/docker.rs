//! The Docker Engine API implementation of [`Engine`], through `bollard`. Podman serves the
//! same API (`podman system service`), so one implementation drives both.
//!
//! Requests use API version 1.41: Docker 20.10 and later and Podman 4 accept it, and nothing
//! newer is needed here.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, ResourcesUlimits};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::{ContainerSpec, Engine, EngineError, LogTail};

const API_VERSION: ClientVersion = ClientVersion { major_version: 1, minor_version: 41 };
/// Per request. Waiting for a container is one long request: the run's own timeout, enforced
/// by the supervisor, is what bounds it, so this only has to be longer than any run.
const REQUEST_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// A Docker-compatible engine at one socket.
pub struct DockerEngine {
    docker: Docker,
}

impl DockerEngine {
    /// `unix:///run/podman.sock`, `/var/run/docker.sock`, or `tcp://host:2375` / `http://...`.
    pub fn connect(socket: &str) -> Result<DockerEngine, EngineError> {
        let docker = if let Some(addr) = socket.strip_prefix("tcp://").or_else(|| socket.strip_prefix("http://")) {
            Docker::connect_with_http(&format!("http://{addr}"), REQUEST_TIMEOUT_SECS, &API_VERSION)
        } else {
            Docker::connect_with_unix(socket.trim_start_matches("unix://"), REQUEST_TIMEOUT_SECS, &API_VERSION)
        }
        .map_err(|e| EngineError::Unavailable(format!("{socket}: {e}")))?;
        Ok(DockerEngine { docker })
    }
}

fn failed(e: bollard::errors::Error) -> EngineError {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, message } => {
            EngineError::NotFound(message)
        }
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            EngineError::Failed(format!("{status_code}: {message}"))
        }
        other => EngineError::Unavailable(other.to_string()),
    }
}

impl Engine for DockerEngine {
    fn start<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<String, EngineError>> {
        Box::pin(async move {
            let host_config = HostConfig {
                network_mode: spec.network.clone(),
                nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
                memory: spec.memory_mb.map(|m| (m * 1024 * 1024) as i64),
                ulimits: Some(
                    spec.ulimits
                        .iter()
                        .map(|(name, soft, hard)| ResourcesUlimits {
                            name: Some(name.clone()),
                            soft: Some(*soft),
                            hard: Some(*hard),
                        })
                        .collect(),
                ),
                binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
                ..HostConfig::default()
            };
            let body = ContainerCreateBody {
                image: Some(spec.image.clone()),
                cmd: Some(spec.cmd.clone()),
                env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                labels: Some(spec.labels.clone().into_iter().collect()),
                working_dir: spec.working_dir.clone(),
                host_config: Some(host_config),
                ..ContainerCreateBody::default()
            };
            let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
            let created = self.docker.create_container(Some(options), body).await.map_err(failed)?;
            for (dir, archive) in &spec.uploads {
                let options = UploadToContainerOptionsBuilder::default().path(dir).build();
                let tar = bollard::body_full(archive.clone().into());
                if let Err(e) = self.docker.upload_to_container(&created.id, Some(options), tar).await {
                    let _ = self.remove(&created.id).await;
                    return Err(failed(e));
                }
            }
            if let Err(e) = self.docker.start_container(&created.id, None).await {
                // Do not leave a created container behind.
                let _ = self.remove(&created.id).await;
                return Err(failed(e));
            }
            Ok(created.id)
        })
    }

    fn wait<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<i64, EngineError>> {
        Box::pin(async move {
            let mut stream = self.docker.wait_container(id, None);
            match stream.next().await {
                Some(Ok(response)) => Ok(response.status_code),
                // bollard reports a non-zero exit as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
                Some(Err(e)) => Err(failed(e)),
                None => Err(EngineError::Failed("the wait ended without an exit code".into())),
            }
        })
    }

    fn logs_tail<'a>(&'a self, id: &'a str, lines: usize) -> BoxFuture<'a, Result<LogTail, EngineError>> {
        Box::pin(async move {
            let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&lines.to_string()).build();
            let mut stream = self.docker.logs(id, Some(options));
            let mut tail = LogTail::default();
            while let Some(item) = stream.next().await {
                match item.map_err(failed)? {
                    bollard::container::LogOutput::StdOut { message } => {
                        tail.stdout.push_str(&String::from_utf8_lossy(&message))
                    }
                    bollard::container::LogOutput::StdErr { message }
                    | bollard::container::LogOutput::Console { message } => {
                        tail.stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    bollard::container::LogOutput::StdIn { .. } => {}
                }
            }
            Ok(tail)
        })
    }

    fn copy_out<'a>(
        &'a self,
        id: &'a str,
        path: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, EngineError>> {
        Box::pin(async move {
            let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
            let mut stream = self.docker.download_from_container(id, Some(options));
            let mut archive = Vec::new();
            while let Some(chunk) = stream.next().await {
                match chunk.map_err(failed) {
                    Ok(bytes) => archive.extend_from_slice(&bytes),
                    Err(EngineError::NotFound(_)) => return Ok(None),
                    Err(e) => return Err(e),
                }
                if archive.len() > max_bytes {
                    return Err(EngineError::Failed(format!("{path} is larger than {max_bytes} bytes")));
                }
            }
            Ok(Some(archive))
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
            match self.docker.remove_container(id, Some(options)).await.map_err(failed) {
                Ok(()) | Err(EngineError::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn list_labelled<'a>(&'a self, label: &'a str, value: &'a str) -> BoxFuture<'a, Result<Vec<String>, EngineError>> {
        Box::pin(async move {
            let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
            let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
            let list = self.docker.list_containers(Some(options)).await.map_err(failed)?;
            Ok(list.into_iter().filter_map(|c| c.id).collect())
        })
    }
}
