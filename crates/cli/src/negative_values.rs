//! Negative numbers as option values, where clap's own test misses them.
//!
//! The numeric options (`--lr`, `--weight-decay`, `--mixup`, …) allow negative
//! numbers, so that `--lr -0.001` reaches the option's own check (which says
//! what range it takes). But clap decides what looks like a number before
//! that, and its test (clap_lex 1.1 `is_number`) refuses a signed exponent or
//! a non-finite value: `--lr -1e-3` and `--mixup -inf` were read as the short
//! flags `-1…` and `-i…`, and the user got "unexpected argument '-1' found".
//! This joins such a value to its option (`--lr=-1e-3`) before clap parses,
//! for exactly the options that allow negative numbers and values Rust reads
//! as an `f64`; anything else (a forgotten value: `--mixup --lr 0.1`) is left
//! for clap to report as before.

use std::collections::HashSet;
use std::ffi::OsString;

/// The long names of every option (in any subcommand) that allows negative numbers.
fn numeric_options(cmd: &clap::Command) -> HashSet<String> {
    let mut names: HashSet<String> = cmd
        .get_arguments()
        .filter(|a| a.is_allow_negative_numbers_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    for sub in cmd.get_subcommands() {
        names.extend(numeric_options(sub));
    }
    names
}

/// `args` with each `--name VALUE` joined into `--name=VALUE` when `name`
/// allows negative numbers and `VALUE` is a negative number (`-1e-3`, `-inf`).
/// Nothing after a `--` is touched.
pub fn join_negative_values(cmd: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    let names = numeric_options(cmd);
    let mut out = Vec::with_capacity(args.len());
    let mut rest = args.into_iter().peekable();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(rest);
            break;
        }
        let option = arg.to_str().and_then(|a| a.strip_prefix("--"));
        let takes_number = option.is_some_and(|name| names.contains(name));
        let negative = |v: &OsString| {
            v.to_str()
                .is_some_and(|v| v.starts_with('-') && v.parse::<f64>().is_ok())
        };
        match rest.peek() {
            Some(value) if takes_number && negative(value) => {
                let mut joined = arg;
                joined.push("=");
                joined.push(rest.next().expect("peeked"));
                out.push(joined);
            }
            _ => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("t").subcommand(
            clap::Command::new("train")
                .arg(
                    clap::Arg::new("lr")
                        .long("lr")
                        .allow_negative_numbers(true)
                        .value_parser(clap::value_parser!(f64)),
                )
                .arg(clap::Arg::new("name").long("name"))
                .arg(clap::Arg::new("files").num_args(0..).last(true)),
        )
    }

    fn join(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        join_negative_values(&cmd(), args)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn joins_negative_numbers_to_numeric_options_only() {
        assert_eq!(
            join(&["t", "train", "--lr", "-1e-3"]),
            ["t", "train", "--lr=-1e-3"]
        );
        assert_eq!(
            join(&["t", "train", "--lr", "-inf"]),
            ["t", "train", "--lr=-inf"]
        );
        // Positive values, other options, forgotten values and words stay apart.
        for args in [
            &["t", "train", "--lr", "1e-3"][..],
            &["t", "train", "--name", "-1e-3"],
            &["t", "train", "--lr", "--name", "x"],
            &["t", "train", "--lr", "-x"],
            &["t", "train", "--", "--lr", "-1"],
        ] {
            assert_eq!(join(args), args);
        }
        // And clap then reads the value as the option's.
        let m = cmd().get_matches_from(join(&["t", "train", "--lr", "-2.5e-1"]));
        let lr = m.subcommand_matches("train").unwrap().get_one::<f64>("lr");
        assert_eq!(lr, Some(&-0.25));
    }
}
