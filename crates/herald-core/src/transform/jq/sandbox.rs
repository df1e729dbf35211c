//! What keeps a jq program from hurting the server: a time limit, a bound
//! on recursion and no I/O.
//!
//! jaq evaluates a program as a tree of lazy iterators and offers no hook
//! for a budget, but every term it evaluates first asks the run's global
//! data for the program's look-up table ([`HasLut::lut`]). Our data,
//! [`Sandbox`], counts those calls: every [`CHECK_EVERY`] steps it compares
//! the clock with the deadline, and on every step it measures how much
//! stack the run has used. Past either bound it unwinds the whole run with
//! [`std::panic::resume_unwind`] (which runs no panic hook, so nothing is
//! printed), and [`contain`] turns that into an error at the top. An
//! unwind is not a jq error, so no `try` in the program can catch it.
//!
//! The one native generator that loops without evaluating terms, `range`,
//! is replaced by one that counts its steps too. Builtins with effects
//! outside the program are replaced: `debug` and `stderr` print nothing,
//! `env` and `halt` are errors; `input`, `inputs` and `$ENV` are not
//! defined at all, and modules cannot be loaded (the loader has no reader).
//!
//! The step limit is what bounds how deeply a run can nest a value (each
//! level costs at least two steps), and so the stack that dropping or
//! comparing it takes, which jaq does recursively: a run needs a thread
//! with [`super::RUN_STACK_BYTES`] of stack. What this does not bound: the
//! memory of one builtin operation (`"x" * 100000000` allocates 100 MB at
//! once); ADR 0005 says so.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

use jaq_core::box_iter::box_once;
use jaq_core::data::{DataT, HasLut};
use jaq_core::native::{Fun, run, v};
use jaq_core::{Error, Exn, Lut, ValX};
use jaq_json::Val;

// A timeout unwinds the run; with `panic = "abort"` it would end the
// process instead.
#[cfg(panic = "abort")]
compile_error!("herald-core's jq sandbox needs panic = \"unwind\"");

/// How many steps pass between two looks at the clock (about 10 µs of
/// work, so a run overshoots its deadline by no more than that).
pub(super) const CHECK_EVERY: u32 = 128;
/// Steps one run may take: about 10 to 30 ms of work in a release build,
/// so on a fast machine this, not the clock, ends a runaway program. At two
/// or more steps per level, no value gets deeper than half this.
pub const MAX_STEPS: u32 = 1_000_000;
/// How much stack the evaluation may use beyond where the run started,
/// well within [`super::RUN_STACK_BYTES`], which also holds the recursive
/// drop of the deepest value [`MAX_STEPS`] allow.
pub(super) const MAX_STACK_BYTES: usize = 16 * 1024 * 1024;

/// Why a run was cut short.
#[derive(Debug)]
pub(super) enum Abort {
    Timeout,
    Steps,
    Depth,
    /// The interpreter panicked on its own: a bug in it, contained.
    Panic(String),
}

/// The jaq data kind of our runs: values are `jaq_json::Val`, and the
/// global data is the metered [`Sandbox`].
pub(super) struct Kind;

impl DataT for Kind {
    type V<'a> = Val;
    type Data<'a> = Sandbox<'a>;
}

/// A run's global data: the program and its meter.
#[derive(Clone)]
pub(super) struct Sandbox<'a> {
    lut: &'a Lut<Kind>,
    meter: &'a Meter,
}

impl<'a> Sandbox<'a> {
    pub fn new(lut: &'a Lut<Kind>, meter: &'a Meter) -> Self {
        Self { lut, meter }
    }
}

impl<'a> HasLut<'a, Kind> for Sandbox<'a> {
    #[inline]
    fn lut(&self) -> &'a Lut<Kind> {
        self.meter.step();
        self.lut
    }
}

/// Steps, the deadline and the stack's starting point of one run.
pub(super) struct Meter {
    steps: Cell<u32>,
    deadline: Instant,
    stack_base: usize,
}

impl Meter {
    /// A meter for a run that starts now, in this frame.
    #[inline(never)]
    pub fn start(timeout: Duration) -> Self {
        Self {
            steps: Cell::new(0),
            deadline: Instant::now() + timeout,
            stack_base: stack_address(),
        }
    }

    #[inline]
    fn step(&self) {
        let steps = self.steps.get().wrapping_add(1);
        self.steps.set(steps);
        if stack_address().abs_diff(self.stack_base) > MAX_STACK_BYTES {
            resume_unwind(Box::new(Abort::Depth));
        }
        if steps.is_multiple_of(CHECK_EVERY) {
            if steps >= MAX_STEPS {
                resume_unwind(Box::new(Abort::Steps));
            }
            if Instant::now() >= self.deadline {
                resume_unwind(Box::new(Abort::Timeout));
            }
        }
    }
}

/// Where the stack is now: the address of a local of this (never inlined)
/// frame. Only differences between two calls on one thread mean anything.
#[inline(never)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(std::ptr::addr_of!(marker)) as usize
}

/// Runs `f`, turning an [`Abort`] unwind (or any other panic inside the
/// interpreter) into an error.
pub(super) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, Abort> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| match payload.downcast::<Abort>() {
        Ok(abort) => *abort,
        Err(other) => Abort::Panic(panic_message(other.as_ref())),
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic in the interpreter".to_owned()
    }
}

/// The native filters a program may call: jaq's own, with the replacements
/// the module documentation lists.
pub(super) fn funs() -> impl Iterator<Item = Fun<Kind>> {
    let replaced = ["range", "env", "halt", "debug_empty", "stderr_empty"];
    let ours: [jaq_core::native::Filter<jaq_core::RunPtr<Kind>>; 5] = [
        ("range", v(3), |mut cv| {
            let by = cv.0.pop_var();
            let to = cv.0.pop_var();
            let from = cv.0.pop_var();
            let meter = cv.0.data().meter;
            Box::new(range(from, to, by).inspect(move |_| meter.step()))
        }),
        ("env", v(0), |_| unavailable("env")),
        ("halt", v(1), |_| unavailable("halt")),
        ("debug_empty", v(0), |_| Box::new(core::iter::empty())),
        ("stderr_empty", v(0), |_| Box::new(core::iter::empty())),
    ];
    jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(move |(name, _, _)| !replaced.contains(name))
        .chain(ours.into_iter().map(run::<Kind>))
}

fn unavailable<'a>(name: &str) -> jaq_core::ValXs<'a, Val> {
    box_once(Err(Exn::from(Error::str(format!(
        "{name} is not available in a transformation"
    )))))
}

/// `range($from; $to; $by)` as jaq's native one computes it (`$from`, then
/// adding `$by` while short of `$to`), as a plain iterator.
fn range<'a>(from: Val, to: Val, by: Val) -> impl Iterator<Item = ValX<'a, Val>> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let direction = by.partial_cmp(&Val::from(0_isize)).unwrap_or(Equal);
    let mut next: Option<ValX<'a, Val>> = Some(Ok(from));
    std::iter::from_fn(move || {
        let current = next.take()?;
        let x = match current {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let more = match direction {
            Greater => x < to,
            Less => x > to,
            Equal => x != to,
        };
        if !more {
            return None;
        }
        next = Some((x.clone() + by.clone()).map_err(Exn::from));
        Some(Ok(x))
    })
}
