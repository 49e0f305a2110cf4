//! # detcd-server
//!
//! The program people run: the [`driver`] that feeds the sans-IO `detcd_engine::node::Node`
//! and carries out its outputs, the seams injected into it ([`clock`], [`disk`]), etcd's gRPC
//! services ([`grpc`]), the [`peer`] transport, and the `detcd` binary's [`config`]. The same
//! source builds for tokio and, with `RUSTFLAGS="--cfg madsim"`, for the simulator.

#[cfg(not(madsim))]
pub mod authority;
pub mod clock;
pub mod config;
pub mod disk;
pub mod driver;
pub mod forward;
#[cfg(not(madsim))]
pub mod gateway;
pub mod grpc;
#[cfg(not(madsim))]
pub mod http;
pub mod jwt;
pub mod metrics;
pub mod peer;
pub mod timer;
#[cfg(not(madsim))]
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;

use detcd_engine::limits;
use detcd_engine::node::{Config as NodeConfig, Node, Request};
use detcd_engine::time::Duration;
use detcd_proto::etcdserverpb::auth_server::AuthServer;
use detcd_proto::etcdserverpb::cluster_server::ClusterServer;
use detcd_proto::etcdserverpb::kv_server::KvServer;
use detcd_proto::etcdserverpb::lease_server::LeaseServer;
use detcd_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use detcd_proto::etcdserverpb::watch_server::WatchServer;
use detcd_proto::etcdserverpb::Member;
use detcd_proto::peerpb::peer_server::PeerServer;
use detcd_proto::v3electionpb::election_server::ElectionServer;
use detcd_proto::v3lockpb::lock_server::LockServer;

use crate::clock::Clock;
use crate::config::{socket_addr, ServerConfig};
use crate::disk::{Identity, Storage};
use crate::driver::{Driver, Handle};

/// How long a clean shutdown waits for calls in flight.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The version printed by `detcd --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The engine's configuration for this member, from the flags.
/// `founding`: this member is one of the founders of the cluster (its log starts from the
/// shared bootstrap snapshot); otherwise it joins an existing cluster and starts empty.
pub fn node_config(config: &ServerConfig, founding: bool) -> Result<NodeConfig, String> {
    let ids = config.member_ids();
    let id = ids[&config.name];
    let voters: Vec<u64> = if founding { ids.values().copied().collect() } else { Vec::new() };
    let mut node = NodeConfig::new(id, voters);
    node.cluster_id = config.cluster_id();
    node.initial_members = config
        .initial_cluster
        .iter()
        .map(|(name, urls)| Member {
            id: ids[name],
            name: name.clone(),
            peer_ur_ls: urls.clone(),
            client_ur_ls: if *name == config.name { config.advertise_client_urls.clone() } else { Vec::new() },
            is_learner: false,
        })
        .collect();
    node.heartbeat_interval = Duration::from_millis(config.heartbeat_interval_ms);
    node.election_ticks = (config.election_timeout_ms / config.heartbeat_interval_ms) as usize;
    node.snapshot_count = config.snapshot_count.max(1);
    node.max_request_bytes = config.max_request_bytes;
    // etcd: 0 means the default quota.
    node.quota_backend_bytes =
        if config.quota_backend_bytes == 0 { limits::QUOTA_BACKEND_BYTES_DEFAULT } else { config.quota_backend_bytes };
    node.snapshot_catch_up_entries = config.snapshot_catch_up_entries;
    node.auth_token_ttl = Duration::from_secs(config.auth_token_ttl_s);
    node.request_timeout = Duration::from_secs(5) + Duration::from_millis(2 * config.election_timeout_ms);
    Ok(node)
}

/// Runs a member until `shutdown` completes or the driver stops (disk failure, removal).
///
/// `clock` is the member's clock ([`Clock::start`] in production), `seed` its randomness.
pub async fn serve<S: Storage + 'static>(
    config: ServerConfig,
    mut storage: S,
    seed: u64,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let recovered = storage.load().map_err(|e| e.to_string())?;
    let (identity, known_members) = establish_identity(&config, &mut storage, &recovered).await?;
    let mut node_config = node_config(&config, identity.founder)?;
    if !identity.founder {
        node_config.id = identity.member_id;
        node_config.cluster_id = identity.cluster_id;
        // A joiner's member list comes from its snapshot; until then, what the cluster told it
        // (the peers' ids under --initial-cluster's names are not theirs).
        node_config.initial_members = known_members;
    }
    let member_id = identity.member_id;
    let cluster_id = identity.cluster_id;
    let peer_urls: BTreeMap<u64, Vec<String>> = node_config
        .initial_members
        .iter()
        .filter(|m| m.id != member_id)
        .map(|m| (m.id, m.peer_ur_ls.clone()))
        .collect();
    let node = Node::new(node_config, recovered, seed, clock.now())?;
    let own_peer_urls = config.initial_advertise_peer_urls.clone();
    let outbox = move |handle: Handle| -> Box<dyn driver::Outbox> {
        Box::new(peer::PeerOutbox::new(member_id, own_peer_urls, cluster_id, peer_urls, handle))
    };
    let (driver, mut handle) = Driver::new(node, storage, outbox, clock);
    if let config::AuthToken::Jwt(options) = &config.auth_token {
        handle.set_jwt(std::sync::Arc::new(jwt::JwtTokens::load(options)?));
    }
    tracing::info!(name = %config.name, member = format!("{member_id:x}"), cluster = format!("{cluster_id:x}"),
        data_dir = %config.data_dir.display(), "starting detcd member");

    // Before anything dials a peer: the dialing side's configuration is set here too.
    #[cfg(not(madsim))]
    let peer_tls = match config.peer_tls.enabled() {
        true => Some(tls::peer::configure(&config.peer_tls)?),
        false => None,
    };
    #[cfg(madsim)]
    if config.peer_tls.enabled() {
        return Err("TLS is not simulated".into());
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for url in &config.listen_client_urls {
        let addr = socket_addr(url)?;
        servers.push(tokio::task::spawn(client_server(
            handle.clone(),
            addr,
            config.max_request_bytes,
            grpc::AuthOptions { bcrypt_cost: config.bcrypt_cost },
            config.client_tls.clone(),
            stop_rx.clone(),
        )));
        tracing::info!(%url, "serving client requests");
    }
    #[cfg(not(madsim))]
    for url in &config.listen_metrics_urls {
        let addr = socket_addr(url)?;
        servers.push(tokio::task::spawn(metrics_server(handle.clone(), addr, stop_rx.clone())));
        tracing::info!(%url, "serving /metrics and /health");
    }
    for url in &config.listen_peer_urls {
        let addr = socket_addr(url)?;
        let service = peer::PeerService { handle: handle.clone(), cluster_id, member_id };
        let mut stop = stop_rx.clone();
        let router = tonic::transport::Server::builder()
            .add_service(PeerServer::new(service).max_decoding_message_size(peer::PEER_MESSAGE_BYTES_MAX));
        let stopped = async move {
            let _ = stop.changed().await;
        };
        #[cfg(not(madsim))]
        if let Some(tls) = &peer_tls {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            let listener =
                tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("peer server on {addr}: {e}"))?;
            servers.push(tokio::task::spawn(async move {
                router
                    .serve_with_incoming_shutdown(tls::accept_all(listener, acceptor), stopped)
                    .await
                    .map_err(|e| format!("peer server on {addr}: {e}"))
            }));
            tracing::info!(%url, "serving peers over TLS");
            continue;
        }
        servers.push(tokio::task::spawn(async move {
            router.serve_with_shutdown(addr, stopped).await.map_err(|e| format!("peer server on {addr}: {e}"))
        }));
        tracing::info!(%url, "serving peers");
    }
    // Announce our name and client URLs once a leader can take it (etcd's publish).
    let publisher = handle.clone();
    let (name, client_urls) = (config.name.clone(), config.advertise_client_urls.clone());
    tokio::task::spawn(async move {
        loop {
            let request = Request::PublishAttributes { name: name.clone(), client_urls: client_urls.clone() };
            match publisher.call(request).await {
                Ok(_) => break,
                Err(detcd_engine::Error::Stopped) => return,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
        tracing::info!("published name and client URLs to the cluster");
    });
    drop(handle);
    let driver = tokio::task::spawn(driver.run());
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down"),
        result = driver => {
            let _ = stop_tx.send(true);
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("driver failed: {e}")),
            };
        }
    }
    let _ = stop_tx.send(true);
    // Servers finish the calls in flight; peers' streams never end by themselves, so the wait
    // is bounded. Everything acknowledged is already on disk: nothing is lost by not waiting.
    let drain = async {
        for server in servers {
            if let Ok(Err(e)) = server.await {
                tracing::warn!("{e}");
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::info!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

/// Rounds of asking every peer of --initial-cluster for the member list before a joining
/// member gives up (etcd asks once; a member added during a fault may find its peers briefly
/// unreachable).
pub const JOIN_DISCOVERY_ROUNDS: usize = 5;
const JOIN_DISCOVERY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Who this member is: from its identity file; for a founder starting the first time, from
/// its flags (ids hashed from the peer URLs, as every founder computes them alike); for a
/// member joining an existing cluster, from the cluster's member list, found by its own peer
/// URLs. Saved (synced) before the member talks to anyone. Also returns the member list the
/// cluster answered, if it was asked (a joiner with nothing on disk yet needs its peers' URLs).
async fn establish_identity<S: Storage>(
    config: &ServerConfig,
    storage: &mut S,
    recovered: &detcd_engine::node::Recovered,
) -> Result<(Identity, Vec<Member>), String> {
    let has_data = recovered.snapshot.is_some()
        || !recovered.entries.is_empty()
        || recovered.hard_state != detcd_engine::raft::HardState::default();
    if let Some(identity) = storage.load_identity().map_err(|e| e.to_string())? {
        if identity.founder || has_data {
            return Ok((identity, Vec::new()));
        }
        // It joined, then stopped before it received anything: ask again for its peers' URLs.
        let (_, members) =
            discover_members(config, |m| m.id == identity.member_id).await.map_err(|answered| match answered {
                Some(_) => format!("member {:x} is not in the cluster's member list (removed?)", identity.member_id),
                None => unreachable_peers(config),
            })?;
        return Ok((identity, members));
    }
    // A founding member's log starts after the bootstrap snapshot every founder shares (which
    // is rebuilt from the initial cluster, not stored): entries from index 2 and no snapshot
    // mean this member founded the cluster, whatever --initial-cluster-state says now.
    let founder_data = recovered.snapshot.is_none() && recovered.entries.first().is_some_and(|e| e.index == 2);
    let (identity, members) = if founder_data || config.initial_cluster_state_new {
        let identity =
            Identity { member_id: config.member_ids()[&config.name], cluster_id: config.cluster_id(), founder: true };
        (identity, Vec::new())
    } else if has_data {
        return Err(format!(
            "{} holds a joined member's data but no identity file: its member id is unknown",
            config.data_dir.display()
        ));
    } else {
        let mut own_urls = config.initial_cluster[&config.name].clone();
        own_urls.sort();
        let is_me = |m: &Member| {
            let mut urls = m.peer_ur_ls.clone();
            urls.sort();
            urls == own_urls
        };
        // A list naming a member at our URLs that has published a name is not ours to take: that
        // member started before (its data dir is gone), or the peer has not applied its removal
        // and our addition yet (a lagging peer: ask the others, and again).
        let is_me_unstarted = |m: &Member| is_me(m) && m.name.is_empty();
        let (cluster_id, members) = match discover_members(config, is_me_unstarted).await {
            Ok(found) => found,
            Err(Some(members)) => {
                if let Some(me) = members.iter().find(|m| is_me(m)) {
                    // Rejoining under the same id could break raft's promises.
                    return Err(format!("member {:x} has already been bootstrapped", me.id));
                }
                // Some member answered, but none listed this member's peer URLs: etcd's words
                // (ValidateClusterAndAssignIDs).
                check_initial_cluster(config, &members)?;
                return Err(format!(
                    "error validating peerURLs {}: unmatched member while checking PeerURLs ({})",
                    describe_members(&members),
                    own_urls.join(",")
                ));
            }
            Err(None) => return Err(unreachable_peers(config)),
        };
        check_initial_cluster(config, &members)?;
        let me = members.iter().find(|m| is_me_unstarted(m)).expect("discover_members returns a list holding it");
        (Identity { member_id: me.id, cluster_id, founder: false }, members)
    };
    storage.save_identity(&identity).map_err(|e| e.to_string())?;
    tracing::info!(
        member = format!("{:x}", identity.member_id),
        cluster = format!("{:x}", identity.cluster_id),
        founder = identity.founder,
        "identity saved in the data dir"
    );
    Ok((identity, members))
}

/// The cluster id and member list, asked from the other members of --initial-cluster, from the
/// first member whose list has a member `wanted` accepts (the joiner itself). Otherwise the last
/// list any member answered, if one did.
async fn discover_members(
    config: &ServerConfig,
    wanted: impl Fn(&Member) -> bool,
) -> Result<(u64, Vec<Member>), Option<Vec<Member>>> {
    let urls = peer_urls_to_ask(config);
    let last_answer = std::sync::Mutex::new(None);
    let accept = |answer: &detcd_proto::peerpb::MembersResponse| {
        if answer.members.is_empty() {
            return false;
        }
        *last_answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer.members.clone());
        answer.members.iter().any(&wanted)
    };
    for round in 0..JOIN_DISCOVERY_ROUNDS {
        if let Some(answer) = peer::fetch_members(&urls, &accept).await {
            tracing::info!(
                cluster = format!("{:x}", answer.cluster_id),
                members = answer.members.len(),
                "learned the cluster's members from a peer"
            );
            return Ok((answer.cluster_id, answer.members));
        }
        if round + 1 < JOIN_DISCOVERY_ROUNDS {
            tokio::time::sleep(JOIN_DISCOVERY_PAUSE).await;
        }
    }
    Err(last_answer.into_inner().unwrap_or_else(|p| p.into_inner()))
}

fn peer_urls_to_ask(config: &ServerConfig) -> Vec<String> {
    config
        .initial_cluster
        .iter()
        .filter(|(name, _)| **name != config.name)
        .flat_map(|(_, urls)| urls.iter().cloned())
        .collect()
}

/// etcd's words (GetClusterFromRemotePeers) when no peer answered.
fn unreachable_peers(config: &ServerConfig) -> String {
    format!(
        "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs ({})",
        peer_urls_to_ask(config).join(",")
    )
}

/// A joiner's --initial-cluster must list the cluster's members as they are, by peer URLs (etcd's
/// `ValidateClusterAndAssignIDs`, with its words): as many members, and the same URLs member for
/// member once both lists are sorted by URLs.
fn check_initial_cluster(config: &ServerConfig, members: &[Member]) -> Result<(), String> {
    let invalid = |why: String| format!("error validating peerURLs {}: {why}", describe_members(members));
    if members.len() != config.initial_cluster.len() {
        return Err(invalid("member count is unequal".into()));
    }
    let sorted_urls = |urls: &[String]| {
        let mut urls = urls.to_vec();
        urls.sort();
        urls
    };
    let mut existing: Vec<Vec<String>> = members.iter().map(|m| sorted_urls(&m.peer_ur_ls)).collect();
    let mut local: Vec<Vec<String>> = config.initial_cluster.values().map(|urls| sorted_urls(urls)).collect();
    existing.sort();
    local.sort();
    match existing.iter().zip(&local).find(|(e, l)| e != l) {
        Some((e, l)) => {
            Err(invalid(format!("unmatched member while checking PeerURLs ({} is not {})", e.join(","), l.join(","))))
        }
        None => Ok(()),
    }
}

fn describe_members(members: &[Member]) -> String {
    let list: Vec<String> = members.iter().map(|m| format!("{:x}={}", m.id, m.peer_ur_ls.join(","))).collect();
    list.join(",")
}

/// A `--listen-metrics-urls` listener: plain HTTP, `/metrics` and `/health` only.
#[cfg(not(madsim))]
async fn metrics_server(
    handle: Handle,
    addr: std::net::SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("metrics server on {addr}: {e}"))?;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "accepting a metrics connection failed");
                    continue;
                }
            },
            _ = stop.changed() => return Ok(()),
        };
        tokio::task::spawn(http::serve_connection(stream, handle.clone(), http::Listener::Metrics, None));
    }
}

async fn client_server(
    handle: Handle,
    addr: std::net::SocketAddr,
    max_request_bytes: usize,
    auth_options: grpc::AuthOptions,
    client_tls: config::TlsFiles,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    #[cfg(madsim)]
    if client_tls.enabled() {
        return Err("TLS is not simulated".into());
    }
    #[cfg(not(madsim))]
    let tls_acceptor = match client_tls.enabled() {
        true => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(&client_tls)?)),
        false => None,
    };
    // gRPC receives a little more than the request limit so that an oversized request still
    // decodes and gets etcd's own "request is too large".
    let receive_max = max_request_bytes + limits::GRPC_OVERHEAD_BYTES;
    #[cfg(not(madsim))]
    let (http_handle, stop_accepting) = (handle.clone(), stop.clone());
    let forwarder = std::sync::Arc::new(forward::Forwarder::new(handle.clone()));
    // Counts requests by method and code for /metrics (the simulator's transport has no layers).
    #[cfg(not(madsim))]
    let mut builder =
        tonic::transport::Server::builder().layer(metrics::grpc_layer::GrpcMetricsLayer(handle.metrics().clone()));
    #[cfg(madsim)]
    let mut builder = tonic::transport::Server::builder();
    // The same services for gRPC clients and (in process) for the JSON gateway.
    macro_rules! client_services {
        ($start:expr) => {
            $start
                .add_service(
                    KvServer::new(grpc::KvService { handle: handle.clone() }).max_decoding_message_size(receive_max),
                )
                .add_service(
                    WatchServer::new(grpc::WatchService { handle: handle.clone() })
                        .max_decoding_message_size(receive_max),
                )
                .add_service(
                    LeaseServer::new(grpc::LeaseService { handle: handle.clone(), forwarder: forwarder.clone() })
                        .max_decoding_message_size(receive_max),
                )
                .add_service(
                    ClusterServer::new(grpc::ClusterService { handle: handle.clone(), forwarder: forwarder.clone() })
                        .max_decoding_message_size(receive_max),
                )
                .add_service(
                    LockServer::new(grpc::LockService { handle: handle.clone() })
                        .max_decoding_message_size(receive_max),
                )
                .add_service(
                    ElectionServer::new(grpc::ElectionService { handle: handle.clone() })
                        .max_decoding_message_size(receive_max),
                )
                .add_service(
                    AuthServer::new(grpc::AuthService { handle: handle.clone(), options: auth_options })
                        .max_decoding_message_size(receive_max),
                )
                .add_service(
                    MaintenanceServer::new(grpc::MaintenanceService {
                        handle: handle.clone(),
                        forwarder: forwarder.clone(),
                    })
                    .max_decoding_message_size(receive_max),
                )
        };
    }
    #[cfg(not(madsim))]
    let (router, gateway) = {
        let routes = client_services!(tonic::service::Routes::default());
        let gateway = gateway::Gateway::new(routes.clone(), handle.metrics().clone(), max_request_bytes);
        (builder.add_routes(routes), gateway)
    };
    #[cfg(madsim)]
    let router = client_services!(builder);
    let stopped = async move {
        let _ = stop.changed().await;
    };
    // Each connection is gRPC (HTTP/2) or etcd's plain-HTTP endpoints (`http`), told apart by
    // its first bytes as etcd's cmux does. etcd's Go clients may send a `scheme://host:port`
    // :authority that h2 refuses: each gRPC connection goes through
    // `authority::AuthorityRewrite` (see there). The simulator's transport carries no HTTP/2.
    #[cfg(not(madsim))]
    let served = {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("client server on {addr}: {e}"))?;
        let (grpc_tx, grpc_rx) = tokio::sync::mpsc::channel(limits::CLIENT_ACCEPT_QUEUE);
        let http_handle = http_handle.clone();
        let mut accept_stop = stop_accepting;
        tokio::task::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "accepting a client connection failed");
                            continue;
                        }
                    },
                    _ = accept_stop.changed() => return,
                };
                let _ = stream.set_nodelay(true);
                let (grpc_tx, handle, tls_acceptor, gateway) =
                    (grpc_tx.clone(), http_handle.clone(), tls_acceptor.clone(), gateway.clone());
                tokio::task::spawn(async move {
                    // TLS: ALPN says which protocol; plain text: the first bytes do.
                    let (connection, grpc) = match tls_acceptor {
                        Some(acceptor) => {
                            let handshake = acceptor.accept(stream);
                            match tokio::time::timeout(http::HTTP_REQUEST_HEAD_TIMEOUT, handshake).await {
                                Ok(Ok(tls)) => {
                                    let connection = tls::ClientConnection::Tls(Box::new(tls));
                                    let grpc = connection.negotiated_h2();
                                    (connection, grpc)
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake with a client failed");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                        None => {
                            let grpc = http::is_grpc(&stream).await;
                            (tls::ClientConnection::Plain(stream), grpc)
                        }
                    };
                    if grpc {
                        let _ =
                            grpc_tx.send(Ok::<_, std::io::Error>(authority::AuthorityRewrite::new(connection))).await;
                    } else {
                        http::serve_connection(connection, handle, http::Listener::Client, Some(gateway)).await;
                    }
                });
            }
        });
        router.serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(grpc_rx), stopped).await
    };
    #[cfg(madsim)]
    let served = router.serve_with_shutdown(addr, stopped).await;
    served.map_err(|e| format!("client server on {addr}: {e}"))
}
