//! How a request body is built from a message (SPEC §5), in two forms an
//! endpoint chooses between (at most one of them; neither sends the payload
//! exactly as posted):
//!
//! - [`PayloadTemplate`] (`template.rs`): a JSON document with
//!   `{{ placeholders }}`, compiled into byte runs and slots; rendering is a
//!   few copies and no JSON parsing. The fast, simple form.
//! - [`Transformation`] (`jq/`): a jq program run by the jaq interpreter on
//!   the message and its delivery context, sandboxed (a time limit, an
//!   output limit, no I/O). The full language, for what a template cannot
//!   say (conditions, renamed or computed fields).
//!
//! Both are compiled once per endpoint version and run per attempt, since
//! the attempt's number and time may appear in the body (ADR 0005).

mod jq;
mod template;

pub use jq::{
    CompileError, DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT, EndpointContext, Limits, MAX_SOURCE_NESTING, MAX_STEPS,
    MAX_TRANSFORMATION_BYTES, RUN_STACK_BYTES, TransformError, TransformInput, Transformation,
};
pub use template::{MAX_TEMPLATE_BYTES, PayloadTemplate, RenderContext, TemplateError, Var};
