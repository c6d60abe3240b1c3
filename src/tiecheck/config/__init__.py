"""Configuration: files (found, read, validated with file:line), path globs, and policies.

config = resolve_config(explicit_path, isolated)
policy = config.policy_for(source, command_line_layer)
report = policy.apply(report)
"""

from tiecheck.config.files import (
    Config,
    ConfigError,
    Override,
    discover_config,
    find_config,
    load_config,
    resolve_config,
)
from tiecheck.config.globs import glob_matches
from tiecheck.config.policy import Layer, Policy, parse_codes

__all__ = [
    "Config",
    "ConfigError",
    "Layer",
    "Override",
    "Policy",
    "discover_config",
    "find_config",
    "glob_matches",
    "load_config",
    "parse_codes",
    "resolve_config",
]
