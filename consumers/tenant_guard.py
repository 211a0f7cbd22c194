"""Pausing and resuming a tenant whose target refuses its credentials.

An operator error (``mailferry.errors.OperatorError``: bad credentials, impersonation denied,
an unusable target config) parks that tenant's records
(``TenantPauses``), is audited once, and the credentials are checked again every
``credential_retry`` until they work; then the parked records go back to the worker.
"""

from __future__ import annotations

import logging

from mailferry.config import MailferryConfig
from mailferry.consumers.outcomes import Job, OutcomeWriter
from mailferry.consumers.registry import TargetRegistry
from mailferry.consumers.tenants import TenantPauses
from mailferry.errors import MailferryError, OperatorError
from mailferry.observe import metrics

log = logging.getLogger(__name__)


class TenantGuard:
    def __init__(self, registry: TargetRegistry, pauses: TenantPauses, writer: OutcomeWriter) -> None:
        self.registry = registry
        self.pauses = pauses
        self.writer = writer

    def check_at_start(self, config: MailferryConfig) -> bool:
        """Check every target's credentials once; True when a tenant was paused."""
        paused = False
        for tenant in config.tenants:
            for target in tenant.targets:
                try:
                    self.registry.get(tenant.id, target.name).check_credentials()
                except MailferryError as exc:
                    if isinstance(exc, OperatorError):
                        paused |= self.pause(tenant.id, target.name, exc)
                    else:
                        log.warning("target %s/%s not usable yet: %s", tenant.id, target.name, exc)
        return paused

    def pause(self, tenant: str, target_name: str, error: MailferryError) -> bool:
        """Pause ``tenant`` (audited once); True when it was not paused before."""
        if not self.pauses.pause(tenant, target_name, error):
            return False
        log.error("tenant %s paused: %s (%s)", tenant, error, error.reason_code)
        metrics.PAUSED_TENANTS.set(len(self.pauses.paused()))
        self.writer.tenant_event(
            "paused", tenant, {"target": target_name, "reason": error.reason_code, "error": str(error)}
        )
        return True

    def resumed(self) -> list[list[tuple[Job, str]]]:
        """Check the tenants that are due; the parked records of each one that works again."""
        out = []
        for tenant, targets in self.pauses.due_checks():
            failed: MailferryError | None = None
            for target_name in targets:
                try:
                    self.registry.get(tenant, target_name).check_credentials()
                except MailferryError as exc:
                    failed = exc
                    break
            if isinstance(failed, OperatorError):
                self.pauses.checked(tenant, failed)
                continue
            parked = self.pauses.resume(tenant)
            log.warning("tenant %s resumed; %d parked deliveries continue", tenant, len(parked))
            metrics.PAUSED_TENANTS.set(len(self.pauses.paused()))
            self.writer.tenant_event("resumed", tenant, {"parked": str(len(parked))})
            out.append(parked)
        return out
