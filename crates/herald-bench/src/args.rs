//! The command-line arguments of `herald bench`, apart from the run itself so
//! the binary can embed them in its clap tree and the defaults read in one place.

use crate::ReceiverMode;

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Base URL of the server under test. Give it more than once for nodes
    /// of one cluster (one database): setup goes to the first, and message
    /// n is posted to URL n mod count, so each node takes an equal share.
    #[arg(
        long,
        env = "HERALD_BENCH_URL",
        default_value = "http://127.0.0.1:8071",
        num_args = 1
    )]
    pub url: Vec<String>,
    /// API token for the server under test.
    #[arg(long, env = "HERALD_BENCH_TOKEN")]
    pub token: Option<String>,
    /// Messages to send (default 10,000 when no --duration is given).
    #[arg(long, conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// Seconds to keep sending.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Messages per second; full speed when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Endpoints per application, all pointing at the sink.
    #[arg(long, default_value_t = 1)]
    pub fanout: u32,
    /// Payload size in bytes (approximate; at least the sequence field).
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Concurrent producers.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Process id of the server, to report its memory and CPU. Given more
    /// than once (one per node), the CPU is summed and the memory is the
    /// first one's.
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// Also measure plain loopback POST/s (of --payload-bytes) from the
    /// producers' client to a sink like the one deliveries go to: the
    /// ceiling the machine allows.
    #[arg(long)]
    pub raw: bool,
    /// How the sink behaves until every message has been sent: `up` answers
    /// at once; `down` refuses connections (a receiver outage: the server
    /// retries on its schedule); `stalled` takes requests in but answers
    /// none (deliveries wait, so sending measures ingest alone). After
    /// sending, it answers everything and the drain is measured.
    #[arg(long, value_enum, default_value_t = ReceiverMode::Up)]
    pub receiver: ReceiverMode,
    /// How long to wait for deliveries after the last message was sent
    /// (default 60 s; 900 s with `--receiver down`, since retries come on
    /// the server's schedule).
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The sink answers on this address (a free loopback port by default).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sink_listen: String,
    /// Fields merged into each endpoint's creation body, as a JSON object:
    /// Herald's delivery policy, e.g. '{"fifo":true}', '{"rateLimit":100}'
    /// or '{"batch":{"maxEvents":100,"maxWaitMs":50}}' (the sink takes a
    /// JSON array body as a batch and counts each message in it).
    #[arg(long, value_parser = parse_object)]
    pub endpoint_json: Option<serde_json::Value>,
    /// The sink answers each request after this many milliseconds (a
    /// receiver that does some work).
    #[arg(long, default_value_t = 0)]
    pub sink_delay_ms: u64,
}

fn parse_object(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}
