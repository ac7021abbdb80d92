//! `builder serve`: the control service on a TCP or unix socket, with TLS, token auth, the gRPC
//! health service, a limit on concurrent builds and graceful shutdown.

mod session;

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::addr::Address;
use crate::auth::RequireToken;
use crate::convert;
use crate::engine::{Engine, EngineError};
use crate::error::ApiError;
use crate::proto;
use crate::proto::control_server::{Control, ControlServer};

/// A context mirror unused this long is removed at server start and by `prune`.
pub const MIRROR_MAX_AGE: Duration = Duration::from_secs(48 * 3600);

/// Largest message either side accepts: a file chunk is 1 MiB, a manifest part a few hundred KiB.
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// Certificates for TLS, as PEM.
#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// With a client CA, clients must present a certificate it signed (mutual TLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

/// How to serve.
#[derive(Clone)]
pub struct ServeOptions {
    pub listen: Address,
    /// The state root: context mirrors live in `<root>/contexts/`.
    pub state_root: PathBuf,
    pub tls: Option<ServerTls>,
    pub token: Option<String>,
    pub max_concurrent_builds: usize,
    /// After a shutdown signal, running builds get this long to finish before they are cancelled.
    pub shutdown_grace: Duration,
    /// Entitlements builds may ask for with `--allow` (`security.insecure`, `network.host`),
    /// as BuildKit's `--allow-insecure-entitlement`: none unless the operator grants them.
    pub entitlements: Vec<String>,
}

/// Counters and limits shared by every call.
pub(crate) struct Shared {
    pub engine: Arc<dyn Engine>,
    pub state_root: PathBuf,
    pub builds: Arc<Semaphore>,
    pub max_builds: usize,
    pub running: AtomicU32,
    pub builds_total: AtomicU64,
    pub bytes_received: AtomicU64,
    pub draining: AtomicBool,
    /// Becomes true when running builds must be cancelled (shutdown grace period over).
    pub stop: watch::Receiver<bool>,
    /// What `ServeOptions::entitlements` grants.
    pub entitlements: Vec<String>,
    /// One build at a time per context mirror.
    mirrors: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Shared {
    pub fn mirror_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = match self.mirrors.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(key.to_string()).or_default().clone()
    }
}

struct ControlService {
    shared: Arc<Shared>,
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub(crate) fn engine_status(e: EngineError) -> Status {
    match e {
        EngineError::Invalid(m) => Status::invalid_argument(m),
        EngineError::NotFound(m) => Status::not_found(m),
        EngineError::Cancelled => Status::cancelled("build cancelled"),
        EngineError::Unsupported(m) => Status::unimplemented(m),
        EngineError::Failed(m) => Status::aborted(m),
    }
}

/// Runs engine work on a thread of its own, outside the runtime: the engine may start runtimes
/// of its own (the registry client does), which tokio forbids on its blocking threads.
pub(crate) fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = Result<T, Status>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("builder-engine".into()).spawn(move || {
        let _ = tx.send(f());
    });
    async move {
        spawned.map_err(|e| Status::internal(format!("start a thread: {e}")))?;
        rx.await.map_err(|_| Status::internal("the engine crashed (see the server log)"))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, EngineError> + Send + 'static) -> Result<T, Status> {
    on_thread(f).await?.map_err(engine_status)
}

#[tonic::async_trait]
impl Control for ControlService {
    type BuildStream = EventStream<proto::BuildServerMessage>;
    type PushStream = EventStream<proto::PushEvent>;

    async fn build(&self, request: Request<Streaming<proto::BuildClientMessage>>) -> Result<Response<Self::BuildStream>, Status> {
        let shared = self.shared.clone();
        if shared.draining.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the server is shutting down and takes no new builds"));
        }
        let permit = shared.builds.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the server is already running {n} builds, its limit (--max-concurrent-builds {n}); try again when one finishes",
                n = shared.max_builds
            ))
        })?;
        let (tx, rx) = mpsc::channel(64);
        let inbound = request.into_inner();
        tokio::spawn(async move {
            shared.running.fetch_add(1, Ordering::SeqCst);
            shared.builds_total.fetch_add(1, Ordering::SeqCst);
            let result = session::run(&shared, inbound, &tx).await;
            if let Err(status) = result {
                tracing::info!(code = ?status.code(), "build session ended: {}", status.message());
                let _ = tx.send(Err(status)).await;
            }
            shared.running.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn images(&self, _: Request<proto::ImagesRequest>) -> Result<Response<proto::ImagesResponse>, Status> {
        let engine = self.shared.engine.clone();
        let images = blocking(move || engine.images()).await?;
        Ok(Response::new(proto::ImagesResponse { images: images.into_iter().map(convert::image_to_proto).collect() }))
    }

    async fn push(&self, request: Request<proto::PushRequest>) -> Result<Response<Self::PushStream>, Status> {
        let req = request.into_inner();
        let engine = self.shared.engine.clone();
        let (tx, rx) = mpsc::channel(64);
        let (ntx, mut nrx) = mpsc::unbounded_channel::<String>();
        let work = on_thread(move || {
            let note = move |m: String| {
                let _ = ntx.send(m);
            };
            let dest = if req.destination.is_empty() { None } else { Some(req.destination.as_str()) };
            engine.push(&req.reference, dest, &req.insecure_registries, &note)
        });
        tokio::spawn(async move {
            while let Some(m) = nrx.recv().await {
                let ev = proto::PushEvent { event: Some(proto::push_event::Event::Note(proto::Note { message: m })) };
                if tx.send(Ok(ev)).await.is_err() {
                    break;
                }
            }
            let last = match work.await {
                Ok(Ok(done)) => Ok(proto::PushEvent { event: Some(proto::push_event::Event::Done(proto::PushDone { reference: done.reference, digest: done.digest })) }),
                Ok(Err(e)) => Err(engine_status(e)),
                Err(e) => Err(e),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn prune(&self, request: Request<proto::PruneRequest>) -> Result<Response<proto::PruneResponse>, Status> {
        let req = request.into_inner();
        let engine = self.shared.engine.clone();
        let keep = if req.keep_storage == 0 { None } else { Some(req.keep_storage) };
        let mut out = blocking(move || engine.prune(req.all, keep)).await?;
        // Context mirrors no build used for two days go too (the cache's own default age).
        let root = self.shared.state_root.clone();
        let (mirrors, bytes) = blocking(move || crate::context::mirror::remove_unused_mirrors(&root, MIRROR_MAX_AGE).map_err(|e| EngineError::Failed(e.to_string()))).await?;
        out.bytes_freed += bytes;
        out.details.insert("context_mirrors".into(), mirrors.to_string());
        Ok(Response::new(convert::prune_to_proto(out)))
    }

    async fn disk_usage(&self, _: Request<proto::DiskUsageRequest>) -> Result<Response<proto::DiskUsageResponse>, Status> {
        let engine = self.shared.engine.clone();
        let out = blocking(move || engine.disk_usage()).await?;
        Ok(Response::new(convert::usage_to_proto(out)))
    }

    async fn info(&self, _: Request<proto::InfoRequest>) -> Result<Response<proto::InfoResponse>, Status> {
        let s = &self.shared;
        let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "builder".into());
        Ok(Response::new(proto::InfoResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            workers: vec![proto::Worker { id: host, platforms: s.engine.platforms(), labels: Default::default() }],
            max_concurrent_builds: u32::try_from(s.max_builds).unwrap_or(u32::MAX),
            running_builds: s.running.load(Ordering::SeqCst),
            context_bytes_received: s.bytes_received.load(Ordering::SeqCst),
            builds_total: s.builds_total.load(Ordering::SeqCst),
        }))
    }
}

/// What this server can do, for clients that want to check before they ask.
pub const CAPABILITIES: &[&str] = &["build", "incremental-context", "context-selection", "file-outputs", "ssh-forwarding", "entitlements", "secrets", "images", "push", "prune", "disk-usage", "health"];

/// Serves until `shutdown` resolves, then stops accepting, gives running builds
/// `shutdown_grace` to finish, cancels the rest and returns. `ready` gets the address actually
/// bound (useful with port 0).
pub async fn serve(
    opts: ServeOptions,
    engine: Arc<dyn Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Address) + Send,
) -> Result<(), ApiError> {
    match crate::context::mirror::remove_unused_mirrors(&opts.state_root, MIRROR_MAX_AGE) {
        Ok((n, bytes)) if n > 0 => tracing::info!("removed {n} context mirrors unused for two days ({bytes} bytes)"),
        Ok(_) => {}
        Err(e) => tracing::warn!("removing unused context mirrors: {e}"),
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let max_builds = opts.max_concurrent_builds.max(1);
    let shared = Arc::new(Shared {
        engine,
        state_root: opts.state_root.clone(),
        builds: Arc::new(Semaphore::new(max_builds)),
        max_builds,
        running: AtomicU32::new(0),
        builds_total: AtomicU64::new(0),
        bytes_received: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        stop: stop_rx,
        entitlements: opts.entitlements.clone(),
        mirrors: Mutex::new(HashMap::new()),
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ControlServer<ControlService>>().await;
    let control = ControlServer::new(ControlService { shared: shared.clone() })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);

    let mut builder = Server::builder();
    if let Some(tls) = &opts.tls {
        let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            cfg = cfg.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder.tls_config(cfg).map_err(|e| ApiError::Tls(format!("server certificate or key: {e}")))?;
    }
    let router = builder
        .layer(tonic::service::InterceptorLayer::new(RequireToken::new(opts.token.clone())))
        .add_service(health_service)
        .add_service(control);

    let drain = Arc::new(tokio::sync::Notify::new());
    let on_signal = {
        let drain = drain.clone();
        let shared = shared.clone();
        let health = health.clone();
        async move {
            shutdown.await;
            shared.draining.store(true, Ordering::SeqCst);
            health.set_not_serving::<ControlServer<ControlService>>().await;
            tracing::warn!("shutting down: no new connections; waiting for running builds");
            drain.notify_one();
        }
    };

    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> = match &opts.listen {
        Address::Tcp(hostport) => {
            let listener = tokio::net::TcpListener::bind(hostport.as_str()).await.map_err(|e| ApiError::Serve(format!("listen on tcp://{hostport}: {e}")))?;
            let local = listener.local_addr().map_err(|e| ApiError::Serve(format!("listen on tcp://{hostport}: {e}")))?;
            ready(&Address::Tcp(local.to_string()));
            // No Nagle delay: a request's HEADERS and DATA frames are separate small writes, and
            // waiting for the peer's delayed ACK would add 40 ms to a round trip.
            let incoming = tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |conn| {
                conn.inspect(|s| {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::debug!("TCP_NODELAY: {e}");
                    }
                })
            });
            Box::pin(router.serve_with_incoming_shutdown(incoming, on_signal))
        }
        Address::Unix(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| ApiError::Serve(format!("create {}: {e}", parent.display())))?;
            }
            // A socket left by a server that died; a live server would still be listening on it.
            if std::os::unix::net::UnixStream::connect(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
            let listener = tokio::net::UnixListener::bind(path).map_err(|e| ApiError::Serve(format!("listen on unix://{}: {e}", path.display())))?;
            ready(&opts.listen);
            let incoming = UnixListenerStream::new(listener);
            Box::pin(router.serve_with_incoming_shutdown(incoming, on_signal))
        }
    };
    let mut server = server;
    let result = tokio::select! {
        r = &mut server => r.map_err(|e| ApiError::Serve(e.to_string())),
        _ = drain.notified() => {
            match tokio::time::timeout(opts.shutdown_grace, &mut server).await {
                Ok(r) => r.map_err(|e| ApiError::Serve(e.to_string())),
                Err(_) => {
                    tracing::warn!("shutdown grace period over: cancelling {} running builds", shared.running.load(Ordering::SeqCst));
                    let _ = stop_tx.send(true);
                    match tokio::time::timeout(Duration::from_secs(30), &mut server).await {
                        Ok(r) => r.map_err(|e| ApiError::Serve(e.to_string())),
                        Err(_) => Err(ApiError::Serve("builds did not stop within 30s of being cancelled".into())),
                    }
                }
            }
        }
    };
    if let Address::Unix(path) = &opts.listen {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Runs [`serve`] on its own runtime until SIGTERM or SIGINT. For the CLI, which is not async.
pub fn run_until_signal(opts: ServeOptions, engine: Arc<dyn Engine>, ready: impl FnOnce(&Address) + Send) -> Result<(), ApiError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("builder-serve").build().map_err(|e| ApiError::Serve(format!("start runtime: {e}")))?;
    rt.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| ApiError::Serve(format!("install SIGTERM handler: {e}")))?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(|e| ApiError::Serve(format!("install SIGINT handler: {e}")))?;
        let signal = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        serve(opts, engine, signal, ready).await
    })
}
