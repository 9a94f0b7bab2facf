//! `pyexec-apiserver`: the python-executor REST API server. Configuration: `pyexec-apiserver --help`.

use pyexec_apiserver::config::Config;

#[tokio::main]
async fn main() {
    let config = Config::load();
    pyexec_apiserver::telemetry::init(config.log_level, config.log_format);
    if let Err(e) = pyexec_apiserver::run(config).await {
        tracing::error!("{e:#}");
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
