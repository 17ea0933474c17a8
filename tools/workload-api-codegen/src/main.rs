//! Writes the prost messages and the tonic client and server of `proto/workload.proto` to
//! the folder given as the first argument (`_.rs`: the proto has no package).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).ok_or("usage: workload-api-codegen OUT_DIR PROTO_DIR")?;
    let protos = std::env::args().nth(2).ok_or("usage: workload-api-codegen OUT_DIR PROTO_DIR")?;
    tonic_prost_build::configure()
        .out_dir(out)
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_protos(&[format!("{protos}/workload.proto")], &[protos])?;
    Ok(())
}
