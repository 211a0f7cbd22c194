"""Typed configuration (pydantic) loaded from TOML and validated at start-up."""

from mailferry.config.loader import load_config, parse_config
from mailferry.config.models import MailferryConfig, Tenant, default_state_dir
from mailferry.config.types import SecretRef

__all__ = ["MailferryConfig", "SecretRef", "Tenant", "default_state_dir", "load_config", "parse_config"]
