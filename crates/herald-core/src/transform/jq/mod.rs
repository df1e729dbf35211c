//! Transformations in jq (SPEC §5): an endpoint's body built by a jq
//! program, run by the jaq interpreter (`jaq-core`, `jaq-std`, `jaq-json`).
//!
//! The program's input `.` is the message and its delivery context:
//!
//! ```text
//! {"msg":      {"id", "eventType", "timestamp" (RFC 3339), "payload"},
//!  "attempt":  {"number", "timestamp" (Unix seconds), "firstSentAt" (RFC 3339)},
//!  "endpoint": {"id", "uid" (or null), "url", "metadata"}}
//! ```
//!
//! It must yield exactly one value, which is sent as compact JSON. A program
//! is compiled once ([`Transformation::compile`], when an endpoint is saved
//! and when its delivery target is loaded) and run per attempt
//! ([`Transformation::run`]) inside the sandbox of `sandbox.rs`: a time
//! limit no `try` can catch, a bound on recursion, an output limit, and no
//! builtin that reads or writes anything outside the program.

mod json;
mod sandbox;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars};
use jaq_json::Val;

use self::sandbox::{Abort, Kind, Meter};
use super::template::RenderContext;
use crate::model::Metadata;

/// Longest program accepted, in bytes of source.
pub const MAX_TRANSFORMATION_BYTES: usize = 64 * 1024;
/// How long one run may take (SPEC does not fix it; ADR 0005).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// The largest body a run may produce.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The stack a thread that compiles or runs programs must have: jaq parses,
/// compiles, compares and drops recursively. Mostly address space: only
/// what a run touches is ever resident.
pub const RUN_STACK_BYTES: usize = 256 * 1024 * 1024;
/// Deepest nesting of brackets a source may have, checked before parsing.
pub const MAX_SOURCE_NESTING: usize = 256;

pub use self::sandbox::MAX_STEPS;

/// The sandbox's bounds on one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The endpoint a body is built for, as the program sees it.
#[derive(Debug, Clone, Copy)]
pub struct EndpointContext<'a> {
    pub id: &'a str,
    pub uid: Option<&'a str>,
    pub url: &'a str,
    pub metadata: &'a Metadata,
}

/// Everything a program is run on: one attempt of one delivery.
#[derive(Debug, Clone, Copy)]
pub struct TransformInput<'a> {
    pub delivery: RenderContext<'a>,
    pub endpoint: EndpointContext<'a>,
}

/// Why a program was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("the transformation is empty")]
    Empty,
    #[error("the transformation is larger than {MAX_TRANSFORMATION_BYTES} bytes")]
    TooLarge,
    #[error("the transformation nests brackets or signs deeper than {MAX_SOURCE_NESTING}")]
    TooDeep,
    /// Lexing or parsing failed, or a name is undefined; the message says
    /// where (line:column) and what.
    #[error("the transformation does not compile: {0}")]
    Invalid(String),
}

/// Why a run produced no body.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TransformError {
    /// The program raised an error (`error(...)`, a type error, ...).
    #[error("the transformation failed: {0}")]
    Runtime(String),
    #[error("the transformation yielded no value")]
    NoOutput,
    #[error("the transformation yielded more than one value")]
    SeveralOutputs,
    #[error("the transformation ran longer than {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the transformation took more than {MAX_STEPS} steps")]
    StepLimit,
    #[error("the transformation recursed too deeply")]
    TooDeep,
    #[error("the transformation's output is larger than {0} bytes")]
    TooLarge(usize),
    /// A value JSON cannot hold (a byte string, a non-string key).
    #[error("the transformation's output is not JSON: {0}")]
    NotJson(String),
    /// The interpreter itself failed; caught, never a crash.
    #[error("the transformation could not be run: {0}")]
    Internal(String),
}

/// A compiled jq program.
pub struct Transformation {
    source: String,
    filter: jaq_core::Filter<Kind>,
    limits: Limits,
}

impl fmt::Debug for Transformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Transformation").field(&self.source).finish()
    }
}

impl PartialEq for Transformation {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.limits == other.limits
    }
}

impl Transformation {
    /// Parses and compiles `source` with the default [`Limits`].
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        Self::compile_with(source, Limits::default())
    }

    /// Parses and compiles `source`, to be run within `limits`.
    pub fn compile_with(source: &str, limits: Limits) -> Result<Self, CompileError> {
        if source.len() > MAX_TRANSFORMATION_BYTES {
            return Err(CompileError::TooLarge);
        }
        if source.trim().is_empty() {
            return Err(CompileError::Empty);
        }
        if nesting(source) > MAX_SOURCE_NESTING {
            return Err(CompileError::TooDeep);
        }
        // jaq's parser and compiler recurse on the program's structure, so
        // they run on a thread with room for it, whoever calls. Compiling is
        // rare (an endpoint saved or loaded), so a thread each time is cheap.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("herald-jq-compile".to_owned())
                .stack_size(RUN_STACK_BYTES)
                .spawn_scoped(scope, || sandbox::contain(|| Self::compile_here(source, limits)))
                .map_err(|e| CompileError::Invalid(format!("no thread to compile on: {e}")))?
                .join()
                .map_err(|_| CompileError::Invalid("the compiler failed".to_owned()))?
                .map_err(|abort| CompileError::Invalid(format!("the compiler failed: {abort:?}")))?
        })
    }

    fn compile_here(source: &str, limits: Limits) -> Result<Self, CompileError> {
        let arena = Arena::default();
        let loader = Loader::new(jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs()));
        let modules = loader
            .load(&arena, File { code: source, path: () })
            .map_err(|errs| CompileError::Invalid(load_errors(source, errs)))?;
        let filter = Compiler::default()
            .with_funs(sandbox::funs())
            .compile(modules)
            .map_err(|errs| CompileError::Invalid(undefined(source, errs)))?;
        Ok(Self {
            source: source.to_owned(),
            filter,
            limits,
        })
    }

    /// The program as it was given (for storage and for the API).
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The request body for one attempt: the program's one output as
    /// compact JSON.
    pub fn run(&self, input: &TransformInput<'_>) -> Result<Vec<u8>, TransformError> {
        let value = json::input(input).map_err(|e| TransformError::Runtime(format!("the payload: {e}")))?;
        let meter = Meter::start(self.limits.timeout);
        let outcome = sandbox::contain(|| {
            let ctx = Ctx::<Kind>::new(sandbox::Sandbox::new(&self.filter.lut, &meter), Vars::new([]));
            let mut outputs = self.filter.id.run((ctx, value));
            let first = match outputs.next() {
                None => return Err(TransformError::NoOutput),
                Some(out) => out.map_err(exception)?,
            };
            match outputs.next() {
                None => {}
                Some(Ok(_)) => return Err(TransformError::SeveralOutputs),
                Some(Err(e)) => return Err(exception(e)),
            }
            drop(outputs);
            json::output(&first, self.limits.max_body_bytes)
        });
        match outcome {
            Ok(result) => result,
            Err(Abort::Timeout) => Err(TransformError::Timeout(self.limits.timeout)),
            Err(Abort::Steps) => Err(TransformError::StepLimit),
            Err(Abort::Depth) => Err(TransformError::TooDeep),
            Err(Abort::Panic(why)) => Err(TransformError::Internal(why)),
        }
    }
}

/// An exception that reached the top: an error, or a `halt` (which the
/// sandbox's own `halt` never raises, but the interpreter has the case).
fn exception(e: jaq_core::Exn<'_, Val>) -> TransformError {
    match e.get_err() {
        Ok(err) => TransformError::Runtime(err.to_string()),
        Err(other) => TransformError::Runtime(format!("{other:?}")),
    }
}

/// The deepest nesting of `(`, `[`, `{` and unary `-` in `source`, strings
/// included (a bound, not a parse: a string full of `(` counts, and is
/// rare). These are what jaq's parser recurses on without bound; keyword
/// blocks, pipes and definitions as deep as 64 KiB allows parse within
/// [`RUN_STACK_BYTES`] (tested).
fn nesting(source: &str) -> usize {
    let mut depth = 0_usize;
    let mut minus = 0_usize;
    let mut deepest = 0;
    for b in source.bytes() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                minus = 0;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                minus = 0;
            }
            b'-' => {
                minus += 1;
                deepest = deepest.max(depth + minus);
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => minus = 0,
        }
    }
    deepest
}

/// `line:column` of the byte offset `at` in `source`, both from 1.
fn position(source: &str, at: usize) -> String {
    let before = &source[..at.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{column}")
}

/// Where `rest`, a suffix of `source` that the lexer or parser stopped at,
/// begins.
fn offset_of(source: &str, rest: &str) -> usize {
    source.len().saturating_sub(rest.len())
}

fn near(rest: &str) -> String {
    let token: String = rest.chars().take(12).collect();
    if token.is_empty() {
        "the end".to_owned()
    } else {
        format!("{token:?}")
    }
}

fn load_errors(source: &str, errs: load::Errors<&str, ()>) -> String {
    let mut out = Vec::new();
    for (_file, err) in errs {
        match err {
            load::Error::Io(items) => out.extend(items.into_iter().map(|(path, why)| format!("{path}: {why}"))),
            load::Error::Lex(items) => out.extend(items.into_iter().map(|(expect, rest)| {
                let what = match expect {
                    // `as_str` knows only these four and panics on others.
                    load::lex::Expect::Delim(open) if !matches!(open, "(" | "[" | "{" | "\"") => {
                        format!("the closing delimiter of {open}")
                    }
                    expect => expect.as_str().to_owned(),
                };
                format!(
                    "{}: expected {what} near {}",
                    position(source, offset_of(source, rest)),
                    near(rest)
                )
            })),
            load::Error::Parse(items) => out.extend(items.into_iter().map(|(expect, rest)| {
                format!(
                    "{}: expected {} near {}",
                    position(source, offset_of(source, rest)),
                    expect.as_str(),
                    near(rest)
                )
            })),
        }
    }
    out.join("; ")
}

fn undefined(source: &str, errs: jaq_core::compile::Errors<&str, ()>) -> String {
    let mut out = Vec::new();
    for (_file, items) in errs {
        for (name, kind) in items {
            // `name` is a slice of `source` (or of the standard library's
            // definitions), so its address tells where it is.
            let start = source.as_ptr() as usize;
            let at = (name.as_ptr() as usize)
                .checked_sub(start)
                .filter(|&at| at <= source.len());
            let arity = match kind {
                jaq_core::compile::Undefined::Filter(n) => format!("/{n}"),
                _ => String::new(),
            };
            let place = at.map(|at| format!("{}: ", position(source, at))).unwrap_or_default();
            out.push(format!("{place}undefined {} {name}{arity}", kind.as_str()));
        }
    }
    out.join("; ")
}
