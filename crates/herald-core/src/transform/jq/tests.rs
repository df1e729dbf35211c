#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::*;
use crate::transform::PayloadTemplate;

fn metadata() -> Metadata {
    [("verifyToken".to_owned(), "tok-123".to_owned())].into()
}

fn with_input<T>(f: impl FnOnce(&TransformInput<'_>) -> T) -> T {
    let metadata = metadata();
    let input = TransformInput {
        delivery: crate::transform::template::tests::ctx(),
        endpoint: EndpointContext {
            id: "ep_1",
            uid: None,
            url: "https://example.com/hook",
            metadata: &metadata,
        },
    };
    f(&input)
}

fn run(program: &str) -> Result<String, TransformError> {
    let t = Transformation::compile(program).unwrap();
    with_input(|input| t.run(input)).map(|body| String::from_utf8(body).unwrap())
}

fn json(program: &str) -> serde_json::Value {
    serde_json::from_str(&run(program).unwrap()).unwrap()
}

/// `f` on a thread with the stack runs are given in the engine.
fn on_run_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(RUN_STACK_BYTES)
            .spawn_scoped(s, f)
            .unwrap()
            .join()
            .unwrap()
    })
}

/// A run that must end by the time or step limit, however the program
/// loops.
fn times_out(program: &str) {
    let started = Instant::now();
    let got = on_run_stack(|| run(program));
    let took = started.elapsed();
    assert!(
        matches!(
            got,
            Err(TransformError::Timeout(DEFAULT_TIMEOUT) | TransformError::StepLimit)
        ),
        "{program}: {got:?}"
    );
    // Generous for a loaded debug build; a hang would take minutes.
    assert!(took < Duration::from_secs(2), "{program} took {took:?}");
}

#[test]
fn the_input_is_the_message_and_its_delivery_context() {
    assert_eq!(
        json("."),
        serde_json::json!({
            "msg": {"id": "msg_1", "eventType": "alarm.triggered",
                    "timestamp": "2023-11-14T22:13:20.123Z", "payload": {"zone": 3, "armed": true}},
            "attempt": {"number": 2, "timestamp": 1_700_000_100_i64, "firstSentAt": "2023-11-14T22:13:20.500Z"},
            "endpoint": {"id": "ep_1", "uid": null, "url": "https://example.com/hook",
                         "metadata": {"verifyToken": "tok-123"}},
        })
    );
    let t = Transformation::compile(".endpoint.uid").unwrap();
    let metadata = Metadata::new();
    with_input(|input| {
        let mut input = *input;
        input.endpoint = EndpointContext {
            uid: Some("door-1"),
            metadata: &metadata,
            ..input.endpoint
        };
        assert_eq!(t.run(&input).unwrap(), br#""door-1""#);
    });
}

/// The alarm-platform envelope of SPEC §6, byte for byte what the
/// equivalent template builds.
#[test]
fn builds_the_alarm_platform_envelope() {
    let out =
        run("{event: .msg.eventType, webhook_id: .msg.id, timestamp: .attempt.timestamp, data: .msg.payload}").unwrap();
    assert_eq!(
        out,
        r#"{"event":"alarm.triggered","webhook_id":"msg_1","timestamp":1700000100,"data":{"zone":3,"armed":true}}"#
    );
    let template = PayloadTemplate::parse(
        r#"{"event": "{{msg.eventType}}", "webhook_id": "{{msg.id}}", "timestamp": "{{attempt.timestamp}}",
            "data": "{{msg.payload}}"}"#,
    )
    .unwrap();
    assert_eq!(out.as_bytes(), with_input(|i| template.render(&i.delivery)));
}

/// The chat-CRM envelope of SPEC §6, the verify token taken from the
/// endpoint's metadata, keys in the program's order.
#[test]
fn builds_the_chat_crm_envelope() {
    let out = run(r#"{_id: .msg.id, event: .msg.eventType, createdAt: .msg.timestamp,
          deliveryAttempts: .attempt.number, firstSentAt: .attempt.firstSentAt,
          items: [.msg.payload], infoWebhook: {verifyToken: .endpoint.metadata.verifyToken}}"#)
    .unwrap();
    assert_eq!(
        out,
        concat!(
            r#"{"_id":"msg_1","event":"alarm.triggered","createdAt":"2023-11-14T22:13:20.123Z","#,
            r#""deliveryAttempts":2,"firstSentAt":"2023-11-14T22:13:20.500Z","#,
            r#""items":[{"zone":3,"armed":true}],"infoWebhook":{"verifyToken":"tok-123"}}"#
        )
    );
}

#[test]
fn the_full_language_is_there() {
    assert_eq!(
        json(r#".msg.payload | to_entries | map(select(.value != true)) | from_entries"#),
        serde_json::json!({"zone": 3})
    );
    assert_eq!(
        json(r#"if .attempt.number > 1 then "retry \(.attempt.number)" else "first" end"#),
        "retry 2"
    );
    assert_eq!(json(r#".msg.eventType | split(".") | first | ascii_upcase"#), "ALARM");
    assert_eq!(json(r#"[.msg.timestamp | test("^2023")]"#), serde_json::json!([true]));
    assert_eq!(json("try error(\"x\") catch ."), "x");
}

#[test]
fn exactly_one_output_is_sent() {
    assert_eq!(run("empty"), Err(TransformError::NoOutput));
    assert_eq!(run("1, 2"), Err(TransformError::SeveralOutputs));
    assert_eq!(run(".msg.payload[]"), Err(TransformError::SeveralOutputs));
    assert_eq!(run(".msg.payload | keys | .[0]").unwrap(), r#""armed""#);
}

#[test]
fn runtime_errors_are_errors_with_the_message() {
    let Err(TransformError::Runtime(why)) = run(r#"error("no zone")"#) else {
        panic!("expected a runtime error");
    };
    assert!(why.contains("no zone"), "{why}");
    assert!(matches!(run(".msg.id + 1"), Err(TransformError::Runtime(_))));
    assert!(matches!(run("1, error(\"late\")"), Err(TransformError::Runtime(_))));
}

#[test]
fn values_json_cannot_hold_are_errors_and_nan_is_null() {
    assert!(matches!(run(".msg.id | tobytes"), Err(TransformError::NotJson(_))));
    assert_eq!(
        run("[nan, infinite, -infinite, 1.5, 10000000000000000000000]").unwrap(),
        "[null,1.7976931348623157e+308,-1.7976931348623157e+308,1.5,10000000000000000000000]"
    );
    assert_eq!(run(r#""é\n\u0000""#).unwrap(), r#""é\n\u0000""#);
}

#[test]
fn runaway_loops_end_at_the_time_limit() {
    times_out("[limit(1000000000; repeat(1))] | length");
    times_out("[range(1e9)] | length");
    times_out("def f: f; f");
    times_out("last(range(1e12))");
    times_out("reduce range(1e12) as $i (0; . + $i)");
}

#[test]
fn no_try_catches_the_time_limit() {
    times_out(r#"try ([range(1e9)] | length) catch "caught""#);
    times_out(r#"[range(1e9)] | length | . as $x | try $x catch 0"#);
    times_out(r#"(try (def f: f; f) catch "caught"), 1 | first"#);
    times_out(r#"label $out | [range(1e9)] | length | ., break $out"#);
}

#[test]
fn the_step_limit_ends_a_run_whatever_the_clock() {
    let patient = Limits {
        timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let t = Transformation::compile_with("[range(1e9)] | length", patient).unwrap();
    assert_eq!(
        on_run_stack(|| with_input(|i| t.run(i))),
        Err(TransformError::StepLimit)
    );
    let t = Transformation::compile_with("[range(100000)] | length", patient).unwrap();
    assert_eq!(on_run_stack(|| with_input(|i| t.run(i))).unwrap(), b"100000");
}

#[test]
fn deep_recursion_is_an_error_not_a_stack_overflow() {
    // No clock: on a loaded machine the time limit could come first, and
    // this is about the depth bound.
    let patient = Limits {
        timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let outcome = on_run_stack(|| {
        [
            "def f: 1 + f; f",
            "def f: [f]; f",
            "def f(g): g | f(g + 1); 0 | f(.)",
            "def f: if . < 1e9 then (. + 1 | f) + 0 else . end; 0 | f",
        ]
        .map(|program| {
            let t = Transformation::compile_with(program, patient).unwrap();
            with_input(|i| t.run(i))
        })
    });
    assert_eq!(outcome[0], Err(TransformError::TooDeep));
    assert_eq!(outcome[1], Err(TransformError::TooDeep));
    for got in outcome {
        assert!(
            matches!(got, Err(TransformError::TooDeep | TransformError::StepLimit)),
            "{got:?}"
        );
    }
}

/// jaq drops nested values recursively: the deepest the step limit lets a
/// run build must still fit the run's stack.
#[test]
fn the_deepest_value_a_run_can_build_is_dropped_safely() {
    let patient = Limits {
        timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    for program in [
        "reduce range(1e9) as $i (0; [.]) | 1",
        "reduce range(1e9) as $i (0; {a: .}) | 1",
        "last(foreach range(1e9) as $i (0; [.]; 1))",
    ] {
        let t = Transformation::compile_with(program, patient).unwrap();
        assert_eq!(
            on_run_stack(|| with_input(|i| t.run(i))),
            Err(TransformError::StepLimit),
            "{program}"
        );
    }
}

#[test]
fn deeply_nested_values_are_refused_on_output() {
    let got = run("reduce range(1000) as $i (0; [.])");
    assert!(
        matches!(got, Err(TransformError::NotJson(ref why)) if why.contains("nested")),
        "{got:?}"
    );
    assert!(run("reduce range(400) as $i (0; [.])").is_ok());
}

#[test]
fn no_builtin_reaches_outside_the_program() {
    for program in [
        "input",
        "[inputs]",
        "$ENV",
        "$ENV.HOME",
        r#"import "x" as x; ."#,
        r#"include "x"; ."#,
        "input_filename",
    ] {
        assert!(
            matches!(Transformation::compile(program), Err(CompileError::Invalid(_))),
            "{program} compiled"
        );
    }
    let Err(TransformError::Runtime(why)) = run("env") else {
        panic!("env ran");
    };
    assert!(why.contains("not available"), "{why}");
    assert!(matches!(run("halt"), Err(TransformError::Runtime(_))));
    assert!(matches!(run(r#""bye" | halt_error"#), Err(TransformError::Runtime(_))));
    // Logging builtins run without printing anything.
    assert_eq!(run(".msg.id | debug | stderr | debug(\"x\")").unwrap(), r#""msg_1""#);
}

#[test]
fn output_over_the_body_limit_is_an_error() {
    assert_eq!(
        run(r#""x" * 2000000"#),
        Err(TransformError::TooLarge(DEFAULT_MAX_BODY_BYTES))
    );
    assert_eq!(
        run(r#""x" * 600000 | [., .]"#),
        Err(TransformError::TooLarge(DEFAULT_MAX_BODY_BYTES))
    );
    let small = Limits {
        max_body_bytes: 10,
        ..Limits::default()
    };
    let t = Transformation::compile_with(".msg.id", small).unwrap();
    assert_eq!(with_input(|i| t.run(i)).unwrap(), br#""msg_1""#);
    let t = Transformation::compile_with(".msg.eventType", small).unwrap();
    assert_eq!(with_input(|i| t.run(i)), Err(TransformError::TooLarge(10)));
}

#[test]
fn programs_that_do_not_compile_are_refused_with_a_reason() {
    assert_eq!(Transformation::compile("  "), Err(CompileError::Empty));
    let huge = format!("\"{}\"", "x".repeat(MAX_TRANSFORMATION_BYTES));
    assert_eq!(Transformation::compile(&huge), Err(CompileError::TooLarge));
    let Err(CompileError::Invalid(why)) = Transformation::compile("{a: .msg.id,\n b: (.x") else {
        panic!("compiled");
    };
    assert!(why.starts_with("2:"), "{why}");
    let Err(CompileError::Invalid(why)) = Transformation::compile(".msg | nosuchfilter(1)") else {
        panic!("compiled");
    };
    assert!(
        why.contains("undefined filter nosuchfilter/1") && why.starts_with("1:8"),
        "{why}"
    );
    assert!(matches!(
        Transformation::compile("$nope"),
        Err(CompileError::Invalid(_))
    ));
}

/// jaq's parser recurses; compiling runs on a thread of its own with room
/// for the deepest source the limits allow, whoever calls.
#[test]
fn deeply_nested_sources_compile_or_are_refused_without_overflow() {
    let brackets = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    assert_eq!(Transformation::compile(&brackets), Err(CompileError::TooDeep));
    let brackets = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert!(Transformation::compile(&brackets).is_ok());
    let pipes = format!(".{}", " | .".repeat(MAX_TRANSFORMATION_BYTES / 4 - 1));
    assert!(Transformation::compile(&pipes).is_ok());
    let n = MAX_TRANSFORMATION_BYTES / 24;
    let ifs = format!("{}.{}", "if . then ".repeat(n), " else . end".repeat(n));
    assert!(Transformation::compile(&ifs).is_ok());
    let minus = format!("{}1", "-".repeat(MAX_TRANSFORMATION_BYTES - 1));
    assert_eq!(Transformation::compile(&minus), Err(CompileError::TooDeep));
    let minus = format!("{}1", "- ".repeat(100));
    assert!(Transformation::compile(&minus).is_ok());
    for program in [
        format!(". as $x | {}.", ". as $x | ".repeat(MAX_TRANSFORMATION_BYTES / 10 - 2)),
        format!("{}.", "def f: .; ".repeat(MAX_TRANSFORMATION_BYTES / 10 - 1)),
        format!("1{}", " + 1".repeat(MAX_TRANSFORMATION_BYTES / 4 - 1)),
        format!(".{}", "?".repeat(MAX_TRANSFORMATION_BYTES - 1)),
        format!(".{}", ".a".repeat(MAX_TRANSFORMATION_BYTES / 2 - 1)),
        format!("{}.", "reduce . as $x (.; ".repeat(100) + &")".repeat(100)),
    ] {
        let _ = Transformation::compile(&program);
    }
}

#[test]
fn a_compiled_program_is_shared_across_threads_and_keeps_its_source() {
    fn shared<T: Send + Sync>(_: &T) {}
    let t = Transformation::compile(".msg.id").unwrap();
    shared(&t);
    assert_eq!(t.source(), ".msg.id");
    assert_eq!(t, Transformation::compile(t.source()).unwrap());
}
