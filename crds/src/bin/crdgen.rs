//! Prints the PythonExecution CRD (`cargo run -p pyexec-crds --bin crdgen > crds/pythonexecution.yaml`), or with
//! `--reference` its Markdown reference (`> docs/crd-reference.md`).

fn main() {
    if std::env::args().any(|a| a == "--reference") {
        print!("{}", pyexec_crds::reference::markdown());
    } else {
        print!("{}", pyexec_crds::crd_yaml());
    }
}
