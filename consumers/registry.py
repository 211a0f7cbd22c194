"""One delivery target per (tenant, target name), built once from the configuration.

A target module is found by the target's ``kind`` (``mailferry.consumers.<kind>``) and
imported only when a tenant uses it, so a deployment that never writes to Graph never
imports its libraries. Every target module exposes ``create(tenant, target_config)``.
"""

from __future__ import annotations

import importlib
import threading
from typing import Protocol, cast

from mailferry.config import MailferryConfig, Tenant
from mailferry.consumers.target import DeliveryTarget
from mailferry.errors import ConfigError, PermanentError

MODULES = {
    "maildir": "mailferry.consumers.targets.maildir",
    "smtp": "mailferry.consumers.targets.smtp",
    "ews": "mailferry.consumers.targets.ews.target",
    "graph": "mailferry.consumers.targets.graph.target",
}


class UnknownTargetError(PermanentError):
    """A delivery names a tenant or target the configuration does not have (any more)."""

    reason_code = "unknown-target"


class _TargetModule(Protocol):
    def create(self, tenant: Tenant, target: object) -> DeliveryTarget: ...


class TargetRegistry:
    """Thread-safe cache of built targets; ``close`` closes them all."""

    def __init__(self, config: MailferryConfig) -> None:
        self.config = config
        self._targets: dict[tuple[str, str], DeliveryTarget] = {}
        self._lock = threading.Lock()

    def resolve(self, tenant_id: str, target_name: str | None) -> tuple[Tenant, str]:
        """The tenant and the effective target name (the tenant's default when empty)."""
        try:
            tenant = self.config.tenant(tenant_id)
        except KeyError:
            raise UnknownTargetError(f"tenant {tenant_id!r} is not in the configuration") from None
        name = target_name or tenant.default_target
        try:
            tenant.target(name)
        except KeyError:
            raise UnknownTargetError(f"tenant {tenant_id!r} has no target {name!r}") from None
        return tenant, name

    def get(self, tenant_id: str, target_name: str | None) -> DeliveryTarget:
        tenant, name = self.resolve(tenant_id, target_name)
        with self._lock:
            target = self._targets.get((tenant.id, name))
            if target is None:
                target = build_target(tenant, name)
                self._targets[(tenant.id, name)] = target
            return target

    def concurrency(self, tenant_id: str, target_name: str | None) -> int:
        """Threads for this (tenant, target): the target's budget, capped by the tenant's."""
        tenant, name = self.resolve(tenant_id, target_name)
        return min(tenant.target(name).concurrency, tenant.delivery_concurrency)

    def kind(self, tenant_id: str, target_name: str | None) -> str:
        tenant, name = self.resolve(tenant_id, target_name)
        return tenant.target(name).kind

    def built(self) -> dict[tuple[str, str], DeliveryTarget]:
        with self._lock:
            return dict(self._targets)

    def close(self) -> None:
        with self._lock:
            targets, self._targets = list(self._targets.values()), {}
        for target in targets:
            try:
                target.close()
            except Exception:
                pass


def build_target(tenant: Tenant, name: str) -> DeliveryTarget:
    config = tenant.target(name)
    module_name = MODULES.get(config.kind)
    if module_name is None:
        raise ConfigError(f"target kind {config.kind!r} has no implementation")
    try:
        module = cast(_TargetModule, importlib.import_module(module_name))
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnknownTargetError(
            f"target kind {config.kind!r} is not available in this build ({module_name})"
        ) from None
    return module.create(tenant, config)
