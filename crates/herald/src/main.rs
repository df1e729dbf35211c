//! The `herald` binary: parses the command line, loads configuration and
//! wires the library crates together. Nothing else lives here.

mod config;
mod listen;
mod serve;

use clap::{Parser, Subcommand};

// The delivery path allocates many small, short-lived buffers across
// threads; mimalloc handles that with far less fragmentation than glibc.
// Built with `no_thp`: mimalloc otherwise asks the kernel for transparent
// huge pages over its arena, and one touched 4 KiB page can then make 2 MiB
// resident (a 1,000,000-message backlog peaked at 93 MB with them, 52 MB
// without; see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Durable, signed webhook delivery (Svix v1 API compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the delivery workers in one process.
    Serve(config::ServeArgs),
    /// Apply schema migrations and exit.
    Migrate(config::StorageArgs),
    /// Measure a running server that speaks the Svix v1 API.
    Bench(herald_bench::BenchArgs),
    /// Capture, verify, show, forward and replay incoming webhooks locally.
    Listen(listen::ListenArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("herald")
        .build()
        .expect("building the tokio runtime");
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Migrate(args) => {
            config::init_logging(&args.log);
            let database = config::Database::from_args(&args)?;
            runtime.block_on(database.migrate())?;
            println!("migrations applied to {database}");
            Ok(())
        }
        Command::Listen(args) => runtime.block_on(listen::run(args)),
        Command::Bench(args) => runtime.block_on(async {
            let json = args.json;
            let report = herald_bench::run(args).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", herald_bench::render(&report));
            }
            Ok(())
        }),
    }
}
