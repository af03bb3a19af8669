//! Log pattern mining: [`TemplateMiner`] turns a stream of log lines into templates such as
//! `session opened for user <*> by (uid=<*>)`, one pass, bounded memory.

mod dates;
mod long_stream;
mod mask;
mod miner;
mod tokens;

pub use long_stream::{Xorshift, long_stream, redraw_digits};
pub use mask::{WILDCARD, is_variable_unit, mask_token};
pub use miner::{
    MineResult, MinerConfig, MinerState, Outcome, Template, TemplateId, TemplateMiner,
};
