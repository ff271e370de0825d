//! A tiny `--flag value` / `--switch` parser (keeps the CLI free of heavy dependencies).

use std::collections::HashMap;
use std::str::FromStr;

use crate::CliError;

/// Flags that take no value.
const SWITCHES: &[&str] = &["json", "no-special", "ignore-eos", "no-subgroups"];

pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    pub fn parse(argv: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut argv = argv.peekable();
        while let Some(a) = argv.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument '{a}'"));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None if SWITCHES.contains(&name) => (name.to_string(), "true".to_string()),
                None => match argv.next() {
                    Some(v) => (name.to_string(), v),
                    None => return Err(format!("--{name} needs a value")),
                },
            };
            values.insert(name, value);
        }
        Ok(Args { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, CliError> {
        self.get(name).ok_or_else(|| CliError::Usage(format!("--{name} is required")))
    }

    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v != "false")
    }

    /// An optional typed value; a malformed one is a usage error naming the flag.
    pub fn parsed<T: FromStr>(&self, name: &str) -> Result<Option<T>, CliError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| CliError::Usage(format!("--{name}: cannot parse '{v}'"))),
        }
    }
}
