"""Putting adapters on the model: ``load_adapter`` (detect, read, check, apply as one transaction,
build the adapter's head), ``add_adapter`` (a fresh trainable adapter, from a method name or a PEFT
config) and ``add_head``. A mixin of :class:`~adapterhub.runtime.model.AdapterModel`, which owns the
state these methods fill in (``_infos``, ``_heads``, ...).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..composition import as_block
from ..errors import AdapterExistsError, AdapterFormatError, AdapterHubError, UnsupportedOperationError, UsageError
from ..plugin.contract import AdapterMethod
from ..plugin.records import AdapterFiles
from ..plugin.registry import detect_method, get_method, get_methods
from ..toolkit.structure import structure_mark
from . import heads, sources, transaction

_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


@contextlib.contextmanager
def _format_errors(path: Path, method: AdapterMethod) -> Iterator[None]:
    """Reading, checking and applying an adapter: a plugin (or PEFT) that trips over a malformed value
    (a string where a number belongs, a ``megatron_config`` naming a module that is not installed)
    still answers with an AdapterFormatError naming the folder, not a traceback."""
    try:
        yield
    except AdapterHubError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ImportError) as exc:
        raise AdapterFormatError(
            f"{path}: method {method.name!r} cannot read this adapter ({type(exc).__name__}: {exc})",
            hint="a value in adapter_config.json or the weights has the wrong type or shape; re-save the adapter",
        ) from exc


@dataclass
class AdapterInfo:
    """What the runtime knows about one loaded adapter."""

    name: str
    method: str
    source: str | None
    format: str
    num_parameters: int
    mergeable: bool
    trainable: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    #: the adapter's own prediction head (head_config.json's "config"), None when it has none
    head: dict[str, Any] | None = None


class AdapterLoading:
    """load_adapter / add_adapter / add_head (see the module docstring)."""

    def load_adapter(
        self,
        source: str | Path,
        name: str | None = None,
        revision: str | None = None,
        *,
        allow_pickle: bool = False,
        is_trainable: bool = False,
    ) -> str:
        """Load an adapter under ``name`` from a directory, a registry name or a Hub repo.

        ``source``: an existing adapter directory (loaded as is), a registry name (``ns/name@spec``)
        or a Hub repo id (``org/repo``, ``org/repo@rev``, ``hf://org/repo``). Registry names and repo
        ids go through the client (resolve, download, verify every file) and are loaded from the
        verified store directory; PEFT and transformers only ever see local files, so they never
        reach the network themselves. ``revision``: a Hub revision.

        ``is_trainable`` (PEFT's spelling): load it to continue training it, as :meth:`set_trainable`
        does afterwards; otherwise a loaded adapter and its head stay frozen.
        """
        path = sources.local_adapter_dir(source, revision)
        installed = path is None
        if installed:
            path = sources.install(str(source), revision)
        name = name or sources.default_name(str(source), path)
        self._check_new_name(name)
        method = detect_method(path, self.model)
        with _format_errors(path, method):
            files = method.read(path, allow_pickle=allow_pickle)
            # messages name what the user asked for (a registry name, a repo id), not a store path
            files.source = str(source) if installed else files.source or str(path)
            if files.head is None:  # a head saved beside an adapter whose own format has no place for it
                from ..toolkit.adapters_format.heads import read_head

                files.head = read_head(path, allow_pickle)
            method.check_dtypes(files)  # whatever reader the method used
        name = self._put_on_model(name, method, files, str(source), where=path)
        if is_trainable:
            self.set_trainable([name])
        return name

    def _put_on_model(self, name: str, method: AdapterMethod, files: AdapterFiles, source: str | None,
                      *, where: Path | str | None = None) -> str:
        """Check ``files``, apply them as one transaction, build their head and record adapter ``name``.
        ``where``: the folder named in errors (the adapter's source when None)."""
        path = where or files.source or name
        with _format_errors(path, method):
            method.check(self.model, files)  # before any mutation
        head = None
        if files.head:
            head_spec = {**files.head, "source": files.source}
            heads.check_head(head_spec, self.model)
            head = heads.build_head(head_spec, self.model)
            head.requires_grad_(False)
        mark = structure_mark()
        with _format_errors(path, method):  # PEFT itself trips over some malformed config values
            transaction.run_transactionally(
                self.model, lambda: method.apply(self.model, name, files), f"method {method.name!r} applying {name!r}",
                lambda: self._structure_changed(since=mark))
        transaction.match_training_mode(self.model, fresh=False)
        if head is not None:
            self._heads.attach(name, head)
            transaction.match_training_mode(self.model)
        self._infos[name] = AdapterInfo(
            name=name,
            method=method.name,
            source=source,
            format=files.format,
            num_parameters=sum(int(t.numel()) for t in files.state_dict.values())
            + sum(int(p.numel()) for p in self._heads.parameters(name)),
            mergeable=method.mergeable,
            config=dict(files.config),
            head=self._heads.config(name),
        )
        self._dispatch()
        return name

    def add_adapter(self, name: str, method: Any, **config: Any) -> AdapterFiles:
        """Create a fresh trainable adapter. ``method`` is a method name (``"lora"``) with its options
        as keywords, or a PEFT config object (``LoraConfig(...)``), whose ``peft_type`` picks the method.
        Afterwards exactly the trainable adapters' parameters need grad."""
        self._check_new_name(name)
        impl, config = self._method_for_new(method, config)
        if not impl.trainable:
            raise UnsupportedOperationError(f"method {impl.name!r} cannot create trainable adapters")
        mark = structure_mark()
        files = transaction.run_transactionally(
            self.model, lambda: impl.create(self.model, name, dict(config)), f"method {impl.name!r} creating {name!r}",
            lambda: self._structure_changed(since=mark))
        transaction.match_training_mode(self.model, fresh=False)
        params = impl.parameters(self.model, name)
        self._infos[name] = AdapterInfo(
            name=name,
            method=impl.name,
            source=None,
            format="peft",
            num_parameters=sum(int(p.numel()) for p in params),
            mergeable=impl.mergeable,
            trainable=True,
            config=dict(files.config),
        )
        if self._active is None:
            self._active = as_block(name)
        self._dispatch()
        self._apply_trainable()
        return files

    def _method_for_new(self, method: Any, config: dict[str, Any]) -> tuple[AdapterMethod, dict[str, Any]]:
        if isinstance(method, str):
            impl = get_method(method)
            # a method that claims this method's files on this model before it does (QLoRA over LoRA
            # on a 4-bit base) creates the adapter: loading its files back picks the same one
            for other in get_methods().values():
                shared = set(other.peft_types) & set(impl.peft_types)
                if other.priority > impl.priority and shared and other.detect({"peft_type": sorted(shared)[0]}, set(), self.model):
                    impl = other
            return impl, config
        to_dict = getattr(method, "to_dict", None)
        peft_type = getattr(method, "peft_type", None)
        if to_dict is None or peft_type is None:
            raise UsageError(f"add_adapter: method must be a method name or a PEFT config, got {method!r}",
                             hint="`adapterhub methods` lists the method names")
        from ..toolkit.peft import jsonable_config

        as_dict = {**jsonable_config(to_dict()), **config}
        kind = str(getattr(peft_type, "value", peft_type)).upper()
        claimants = [m for m in get_methods().values() if kind in m.peft_types and m.detect(as_dict, set(), self.model)]
        if not claimants:
            raise UnsupportedOperationError(f"no installed method creates PEFT type {kind!r}",
                                            hint="`adapterhub methods` lists the installed methods")
        impl = max(claimants, key=lambda m: m.priority)
        return impl, {k: v for k, v in as_dict.items() if k != "peft_type"}

    def add_head(
        self,
        name: str,
        num_labels: int,
        *,
        labels: Sequence[str] | None = None,
        head_type: str = "classification",
        layers: int = 2,
        activation_function: str = "tanh",
        use_pooler: bool = False,
        dropout_prob: float | None = None,
        bias: bool = True,
        seed: int | None = None,
    ) -> None:
        """Give adapter ``name`` a fresh, trainable prediction head (AdapterHub's layout).

        A classification head reads the encoder's first token (on GPT-2, GPT-J, Llama and Mistral
        the last one that is not padding, as ``adapters`` does), a tagging head every token; it
        answers whenever ``name`` does (see :mod:`adapterhub.runtime.heads`) and is saved with the
        adapter by ``save_adapter`` in the AdapterHub format. ``bias`` is the output layer's.
        """
        self._method(name)
        if name in self._heads:
            raise AdapterExistsError(f"adapter {name!r} already has a head", hint="delete_adapter() and load it again")
        spec = heads.new_head_spec(
            self.model, num_labels, head_type=head_type, layers=layers, activation_function=activation_function,
            labels=list(labels) if labels else None, use_pooler=use_pooler, dropout_prob=dropout_prob, bias=bias,
            seed=seed,
        )
        self._heads.attach(name, heads.build_head(spec, self.model))
        transaction.match_training_mode(self.model)
        self._trainable_heads.add(name)
        info = self._infos[name]
        info.head = self._heads.config(name)
        info.num_parameters += sum(int(p.numel()) for p in self._heads.parameters(name))
        self._dispatch()
        self._apply_trainable()

    def _head_kind(self, name: str) -> str | bool:
        """How adapter ``name`` takes part in choosing the answering head (see heads.route)."""
        if name in self._heads:
            return "runtime"
        if self._infos[name].config.get("modules_to_save"):
            return "model"  # a PEFT copy of the model's own classifier answers through the model's head
        return False

    def _check_new_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name) or name.startswith("__"):
            raise UsageError(f"invalid adapter name {name!r}", hint="use letters, digits, '_' and '-'")
        if name in self._infos:
            raise AdapterExistsError(f"an adapter named {name!r} is already loaded", hint="pass another name=")

