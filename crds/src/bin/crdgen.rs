//! Prints the PythonExecution CRD: `cargo run -p pyexec-crds --bin crdgen > crds/pythonexecution.yaml`.

fn main() {
    print!("{}", pyexec_crds::crd_yaml());
}
