//! Prints the PythonExecution CRD (`cargo run -p pyexec-crds --bin crdgen > crds/pythonexecution.yaml`), with
//! `--pool` the PythonExecutionPool CRD (`> crds/pythonexecutionpool.yaml`), with `--session` the PythonSession CRD
//! (`> crds/pythonsession.yaml`), or with `--reference` the Markdown reference of all three
//! (`> docs/crd-reference.md`).

fn main() {
    if std::env::args().any(|a| a == "--reference") {
        print!("{}", pyexec_crds::reference::markdown());
    } else if std::env::args().any(|a| a == "--session") {
        print!("{}", pyexec_crds::session_crd_yaml());
    } else if std::env::args().any(|a| a == "--pool") {
        print!("{}", pyexec_crds::pool_crd_yaml());
    } else {
        print!("{}", pyexec_crds::crd_yaml());
    }
}
