//! `pyexec-operator`: runs PythonExecution resources in locked-down Pods.
//!
//! One replica reconciles at a time (leader election through a Lease); every replica serves `/metrics`,
//! `/healthz`, `/readyz` and the stored outputs at `/logs/...`.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use pyexec_core::logging::{self, LogFormat};
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::OPERATOR;
use pyexec_operator::attach::ArchiveFetcher;
use pyexec_operator::cli::Args;
use pyexec_operator::config::OperatorConfig;
use pyexec_operator::context::Context;
use pyexec_operator::desired::find_default_deny;
use pyexec_operator::logs::LogStore;
use pyexec_operator::metrics::Metrics;
use pyexec_operator::server::{LogTokens, Readiness, ServerState, router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init("info,kube=warn", LogFormat::Json);
    let args = Args::parse();
    if args.print_crd {
        print!("{}", pyexec_crds::crd_yaml());
        return Ok(());
    }
    let config = match &args.config {
        Some(path) => OperatorConfig::load(path)?,
        None => OperatorConfig::default(),
    };
    let client = Client::try_default().await.context("connecting to the Kubernetes API")?;
    check_default_deny(&client, args.watch_namespace.as_deref(), config.require_default_deny).await?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| OPERATOR.into())
    });
    let metrics = Metrics::new();
    let logs = LogStore::new(&config.logs).with_file_max_bytes(config.files.max_bytes);
    let logs_tokens = LogTokens::load(&config.logs).context("reading the log store's tokens")?;
    tracing::info!(namespaces = logs_tokens.namespaces(), "log store tokens read");
    let archives =
        config.archives.as_ref().map(ArchiveFetcher::new).transpose().context("reading the archive store token")?;

    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let ready = Readiness::default();
    let app = router(ServerState { metrics: metrics.clone(), logs: logs.clone(), logs_tokens, ready: ready.clone() });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP endpoint stopped");
        }
    });

    let lease_namespace = args.namespace.clone().or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|s| s.trim().to_owned())
    });
    let mut builder = LeaseManagerBuilder::new(client.clone(), OPERATOR).with_identity(identity.clone());
    if let Some(ns) = &lease_namespace {
        builder = builder.with_namespace(ns.clone());
    }
    let (mut leader, lease_task) = builder.build().await.context("setting up leader election")?.watch().await;
    tracing::info!(%identity, "waiting for the leader lease");
    while !*leader.borrow_and_update() {
        leader.changed().await.context("the lease manager stopped")?;
    }
    metrics.leader.set(1);
    tracing::info!(%identity, "leading: reconciling PythonExecutions");

    let reporter = Reporter { controller: OPERATOR.into(), instance: Some(identity) };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context::new(client.clone(), config, recorder, logs, archives, metrics.clone()));
    let controller = pyexec_operator::controller::run(client.clone(), ctx, args.watch_namespace.as_deref(), ready);
    tokio::select! {
        () = controller => tracing::info!("controller stopped"),
        changed = leader.changed() => {
            // Losing the lease means another replica may be reconciling: stop at once and let the Pod restart.
            tracing::error!(?changed, "lost the leader lease; exiting");
            std::process::exit(1);
        }
    }
    drop(leader);
    let _ = lease_task.await;
    Ok(())
}

/// Checks that every namespace the operator runs executions in has a default-deny NetworkPolicy for execution Pods
/// (`desired::is_default_deny`): the watched namespace, or, watching all, those holding PythonExecutions now
/// (namespaces used later are not checked). A missing one is a loud warning, or, with `requireDefaultDeny`, a
/// refusal to start.
async fn check_default_deny(client: &Client, watched: Option<&str>, require: bool) -> anyhow::Result<()> {
    let namespaces: Vec<String> = match watched {
        Some(ns) => vec![ns.to_owned()],
        None => {
            let all: Api<PythonExecution> = Api::all(client.clone());
            let mut found: Vec<String> = match all.list_metadata(&ListParams::default()).await {
                Ok(list) => list.items.iter().filter_map(|cr| cr.namespace()).collect(),
                Err(e) if require => return Err(e).context("listing PythonExecutions to check their namespaces"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list PythonExecutions: default-deny NetworkPolicies unchecked");
                    Vec::new()
                }
            };
            found.sort();
            found.dedup();
            tracing::info!(
                namespaces = ?found,
                "watching all namespaces: only those holding PythonExecutions now are checked for a default-deny \
                 NetworkPolicy"
            );
            found
        }
    };
    for ns in namespaces {
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
        let policies = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) if require => {
                return Err(e).with_context(|| format!("listing the NetworkPolicies of namespace {ns}"));
            }
            Err(e) => {
                tracing::warn!(namespace = %ns, error = %e, "cannot list NetworkPolicies: default-deny unchecked");
                continue;
            }
        };
        match find_default_deny(&policies) {
            Some(policy) => {
                tracing::info!(namespace = %ns, policy = %policy.name_any(), "default-deny NetworkPolicy found")
            }
            None if require => anyhow::bail!(
                "namespace {ns} has no default-deny NetworkPolicy for execution Pods (requireDefaultDeny): create \
                 one selecting the label pyexec.io/execution with policyTypes Ingress and Egress and no rules"
            ),
            None => tracing::warn!(
                namespace = %ns,
                "!!! namespace has NO default-deny NetworkPolicy for execution Pods: an execution Pod is open until \
                 its own policy exists, and any other policy selecting it opens it further; create one (the Helm \
                 chart does) and set requireDefaultDeny"
            ),
        }
    }
    Ok(())
}
