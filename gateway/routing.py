"""Model names to targets: names, aliases and `provider/model`, per-key permissions, picking."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from gateway.affinity import Affinity, rendezvous, weighted
from gateway.config import Account, KeySettings, ModelSettings, Settings
from gateway.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from gateway.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Target:
    """One place a model can be served: a provider and the model's name there."""

    provider: Provider
    model: str
    weight: float = 1.0


class Router:
    def __init__(self, settings: Settings, providers: Mapping[str, Provider]) -> None:
        self.providers = providers
        self.models = settings.models
        self.health = Health()
        self._by_name: dict[str, ModelSettings] = {}
        self._targets: dict[str, tuple[Target, ...]] = {}
        for model in settings.models:
            targets = tuple(Target(providers[t.provider], t.model, t.weight) for t in model.targets)
            for name in (model.name, *model.aliases):
                self._by_name[name] = model
                self._targets[name] = targets

    def resolve(
        self, requested: str, key: KeySettings, only_provider: str | None = None
    ) -> tuple[ModelSettings | None, tuple[Target, ...]]:
        """The configured model (None for `provider/model`) and the targets this key may use."""
        if only_provider is not None and only_provider not in self.providers:
            raise InvalidRequestError(
                f"Unknown provider {only_provider!r} in the x-provider header.", param="x-provider"
            )
        model = self._by_name.get(requested)
        if model is not None:
            targets = self._targets[requested]
            names: tuple[str, ...] = (requested, model.name)
        else:
            prefix, sep, upstream = requested.partition("/")
            provider = self.providers.get(prefix) if sep and upstream else None
            if provider is None:
                raise model_not_found(requested)
            targets = (Target(provider, upstream),)
            names = (requested,)
        if not may_use(key, names):
            raise PermissionDeniedError(
                f"This key is not allowed to use the model '{requested}'.",
                param="model",
                code="model_not_allowed",
            )
        if only_provider is not None:
            targets = tuple(t for t in targets if t.provider.name == only_provider)
            if not targets:
                raise InvalidRequestError(
                    f"The model '{requested}' is not served by provider {only_provider!r}.",
                    param="x-provider",
                )
        if key.regions is not None:
            targets = tuple(t for t in targets if t.provider.settings.region in key.regions)
            if not targets:
                raise PermissionDeniedError(
                    f"The model '{requested}' is only served outside the regions this key "
                    f"allows ({', '.join(key.regions)}).",
                    param="model",
                    code="region_not_allowed",
                )
        return model, targets

    def visible(self, key: KeySettings) -> list[ModelSettings]:
        return [m for m in self.models if may_use(key, (m.name,))]


def may_use(key: KeySettings, names: Sequence[str]) -> bool:
    if key.models is None:
        return True
    return any(fnmatchcase(name, pattern) for pattern in key.models for name in names)


def model_not_found(requested: str) -> NotFoundError:
    return NotFoundError(
        f"The model '{requested}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def pick(
    targets: Sequence[Target], health: Health, affinity: Affinity | None = None
) -> tuple[Target, Account]:
    """A healthy target and account by weight; when every one is cooling down, any of them
    (a background job or a token count has no client waiting to be told 503)."""
    found = health.pick(targets, set(), affinity) or Health().pick(targets, set(), affinity)
    assert found is not None
    return found


class Health:
    """Passive health, per process: a target's account that failed is skipped while it cools."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._cool_until: dict[tuple[str, str, str], float] = {}

    def fail(self, target: Target, account: Account, retry_after_s: float | None) -> None:
        cooldown = target.provider.settings.cooldown_s
        if retry_after_s is not None:
            cooldown = max(cooldown, retry_after_s)
        self._cool_until[_pair(target, account)] = self.clock() + cooldown

    def cooling_for(self, target: Target, account: Account) -> float:
        until = self._cool_until.get(_pair(target, account))
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._cool_until[_pair(target, account)]
            return 0.0
        return left

    def pick(
        self,
        targets: Sequence[Target],
        tried: set[tuple[str, str, str]],
        affinity: Affinity | None = None,
    ) -> tuple[Target, Account] | None:
        """A healthy, untried pair: the one the request's chain prefers, else by target weight
        times account weight (placed by the request's prompt digest when it has one)."""
        pairs, idents, weights = [], [], []
        for target in targets:
            for account in target.provider.settings.accounts:
                ident = _pair(target, account)
                if ident in tried or self.cooling_for(target, account):
                    continue
                pairs.append((target, account))
                idents.append(ident)
                weights.append(target.weight * account.weight)
        if len(pairs) <= 1:
            return pairs[0] if pairs else None
        if affinity is not None:
            preferred = _preferred(pairs, affinity)
            if preferred is not None:
                return preferred
            digest = affinity.digest()
            if digest is not None:
                return rendezvous(pairs, idents, weights, digest)
        return weighted(pairs, weights)

    def soonest(self, targets: Sequence[Target]) -> float:
        """Seconds until the first of these targets' accounts is usable again."""
        waits = [self.cooling_for(t, a) for t in targets for a in t.provider.settings.accounts]
        return min(waits, default=0.0)


def _preferred(
    pairs: Sequence[tuple[Target, Account]], affinity: Affinity
) -> tuple[Target, Account] | None:
    """The pair that served the request's previous turn (on the same upstream model when
    several targets share the provider), if it is among these."""
    binding = affinity.binding
    if binding is None or binding.prefer is None:
        return None
    provider, account_name = binding.prefer
    found = None
    for target, account in pairs:
        if target.provider.name == provider and account.name == account_name:
            if target.model == binding.prefer_model:
                return (target, account)
            found = found or (target, account)
    return found


def _pair(target: Target, account: Account) -> tuple[str, str, str]:
    return (target.provider.name, target.model, account.name)
