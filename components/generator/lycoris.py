"""LyCORIS files (LoHa, LoKr) and kohya DoRA as peft adapters on the UNet and the text encoder.

diffusers converts kohya LoRA and LoCon (its 3x3 conv layers included) itself in
``load_lora_weights``, but for SD 1.5 it has no LoHa/LoKr conversion and drops ``dora_scale`` with
a warning (the file would load as a plain, wrong LoRA). These files are loaded here the way
diffusers loads a LoRA into one model (``load_lora_adapter``): a peft config built from the
tensors' shapes (``LoHaConfig``, ``LoKrConfig``, ``LoraConfig(use_dora=True)``),
``inject_adapter_in_model``, then ``set_peft_model_state_dict``. The result is a peft tuner layer
like diffusers' own LoRA layers, so ``set_adapters``, ``fuse_lora``/``unfuse_lora``,
``delete_adapters`` and the exact base restore of ``apply.py`` work on it unchanged, and adapters
of different kinds compose in one variant (peft stacks a second tuner layer around the first).

Kohya and LyCORIS name a module by its path in the diffusers-layout UNet or the CLIP text model,
dots turned into underscores, behind ``lora_unet_`` / ``lora_te_``
(``lora_unet_down_blocks_1_attentions_0_proj_in.hada_w1_a``,
``lora_te_text_model_encoder_layers_0_self_attn_q_proj.lokr_w1``).

Scales follow LyCORIS: LoHa ``alpha / rank``; LoKr ``alpha / rank`` when a Kronecker factor is
rank-decomposed and 1 when both are full matrices; DoRA ``alpha / rank`` inside the norm. A
variant's weight multiplies that scale, as for a LoRA.

DoRA: peft keeps one magnitude per output row, which is LyCORIS' ``wd_on_out`` layout
(``dora_scale`` of shape ``(out, 1)``). The older input-axis layout (``(1, in)``) has no peft
equivalent and is refused with that reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from .lora_keys import AdapterFileError

# (pipeline component, kohya prefix) for SD 1.5
COMPONENT_PREFIXES = (("unet", "lora_unet_"), ("text_encoder", "lora_te_"))
# tensor suffixes each algorithm writes per module (``alpha`` is shared)
SUFFIXES = {
    "LoHa": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"),
    "LoKr": ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"),
    "DoRA": ("lora_down.weight", "lora_up.weight", "dora_scale"),
}
LYCORIS_TYPES = tuple(SUFFIXES)

Tensors = dict[str, torch.Tensor]  # one module's tensors by suffix
Plan = tuple[object, dict[str, torch.Tensor]]  # (peft config, peft-format state dict) for one model


@dataclass
class LycorisLoad:
    """What one file did on the pipeline."""
    adapted: int  # modules that received the adapter
    unmatched: list[str]  # the file's module names that name no layer of this model


def group_by_module(state: dict[str, torch.Tensor]) -> dict[str, Tensors]:
    """``{kohya module: {suffix: tensor}}``; kohya module names hold no dot, so the first dot splits."""
    groups: dict[str, Tensors] = {}
    for key, tensor in state.items():
        module, _, suffix = key.partition(".")
        groups.setdefault(module, {})[suffix] = tensor
    return groups


def kohya_names(model: nn.Module, prefix: str) -> dict[str, str]:
    """Kohya module name -> module path, for every Linear/Conv2d of ``model``.

    A layer that peft already wrapped (another adapter) keeps its own path; the layers inside the
    wrapper (``base_layer``, ``lora_A``, ...) are not targets."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    names: dict[str, str] = {}
    wrapped: set[str] = set()
    for path, module in model.named_modules():
        parts = path.split(".")
        if any(".".join(parts[:i]) in wrapped for i in range(1, len(parts))):
            continue
        if isinstance(module, BaseTunerLayer):
            wrapped.add(path)
        elif not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        # transformers 5's CLIPTextModel has no ``text_model`` level; kohya names keep it
        logical = path if prefix != "lora_te_" or path.startswith("text_model.") else f"text_model.{path}"
        names[prefix + logical.replace(".", "_")] = path
    return names


def load_lycoris(pipe, state: dict[str, torch.Tensor], adapter_type: str, adapter_name: str,
                 file_name: str) -> LycorisLoad:
    """Inject ``state`` (kohya/LyCORIS keys) as the peft adapter ``adapter_name``.

    Raises ``AdapterFileError`` naming the file when no module of the file matches a layer of this
    model, or when its tensors do not fit the layers they name."""
    if adapter_type not in SUFFIXES:
        raise AdapterFileError(f"{file_name}: adapter type {adapter_type!r} is not one of "
                               f"{', '.join(LYCORIS_TYPES)}")
    groups = group_by_module(state)
    for module, tensors in groups.items():
        unknown = sorted(set(tensors) - set(SUFFIXES[adapter_type]) - {"alpha"})
        if unknown:
            raise AdapterFileError(f"{file_name}: module {module} holds tensors a {adapter_type} loader "
                                   f"does not know ({', '.join(unknown[:3])}); expected "
                                   f"{', '.join(SUFFIXES[adapter_type])}, alpha")
    plans, unmatched = _match(pipe, groups, file_name)
    for model, mine in plans:
        config, peft_state = _BUILDERS[adapter_type](file_name, model, mine)
        _inject(model, config, peft_state, adapter_name, file_name)
    return LycorisLoad(adapted=sum(len(m) for _, m in plans), unmatched=unmatched)


def _match(pipe, groups: dict[str, Tensors],
           file_name: str) -> tuple[list[tuple[nn.Module, dict[str, Tensors]]], list[str]]:
    """``([(model, {module path: tensors})], unmatched kohya names)``; raises when nothing matches."""
    plans: list[tuple[nn.Module, dict[str, Tensors]]] = []
    matched: set[str] = set()
    for component, prefix in COMPONENT_PREFIXES:
        model = getattr(pipe, component, None)
        if model is None:
            continue
        names = kohya_names(model, prefix)
        mine = {names[m]: t for m, t in groups.items() if m in names}
        matched |= {m for m in groups if m in names}
        if mine:
            plans.append((model, mine))
    unmatched = sorted(set(groups) - matched)
    if not plans:
        raise AdapterFileError(f"{file_name}: no key matched a layer of this model (none of its "
                               f"{len(groups)} modules, e.g. {', '.join(unmatched[:3])}); nothing loaded")
    return plans, unmatched


def require_a_match(pipe, keys, file_name: str) -> None:
    """Raise ``AdapterFileError`` when no module of a kohya LoRA/LoCon file names a layer of this
    model (diffusers would fail with a bare "target modules not found", or load nothing).

    Files in the original-SD layout (``input_blocks``/``middle_block``/``output_blocks``), which
    diffusers renames itself, are left to diffusers."""
    keys = list(keys)
    if any(m in k for k in keys for m in ("input_blocks", "middle_block", "output_blocks")):
        return
    _match(pipe, group_by_module(dict.fromkeys(keys)), file_name)


def _inject(model: nn.Module, config, peft_state: dict[str, torch.Tensor], adapter_name: str,
            file_name: str) -> None:
    """peft's own loading path, as diffusers' ``load_lora_adapter`` uses it."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    inject_adapter_in_model(config, model, adapter_name=adapter_name)
    _expose_conv_groups(model)
    _fit_magnitudes(model, peft_state, adapter_name)
    result = set_peft_model_state_dict(model, peft_state, adapter_name)
    missing = [k for k in result.missing_keys if f".{adapter_name}" in k]
    if result.unexpected_keys or missing:
        shown = (result.unexpected_keys or missing)[:3]
        raise AdapterFileError(f"{file_name}: tensors do not fit this model's layers "
                               f"({'unexpected' if result.unexpected_keys else 'missing'}: {', '.join(shown)})")


def _expose_conv_groups(model: nn.Module) -> None:
    """peft's LoRA ``Conv2d`` reads ``groups`` from the layer it wraps, which is a LyCORIS wrapper
    when a kohya LoRA (its 1x1 ``proj_in``, its LoCon convs) is loaded after a LoHa/LoKr on the same
    layer: give the wrapper the ``groups`` of the convolution it wraps (all else peft reads through
    ``get_base_layer``)."""
    from peft.tuners.lycoris_utils import LycorisLayer

    for module in model.modules():
        if isinstance(module, LycorisLayer) and "groups" not in module.__dict__:
            base = module.get_base_layer()
            if isinstance(base, nn.Conv2d):
                module.groups = base.groups


def _fit_magnitudes(model: nn.Module, peft_state: dict[str, torch.Tensor], adapter_name: str) -> None:
    """peft keeps a DoRA magnitude as ``(out,)`` for Linear and ``(1, out, 1, 1)`` for Conv2d;
    kohya writes ``(out, 1)`` / ``(out, 1, 1, 1)``: same values per output row, reshaped."""
    for key in [k for k in peft_state if k.endswith(".lora_magnitude_vector")]:
        layer = model.get_submodule(key.rsplit(".", 1)[0])
        target = layer.lora_magnitude_vector[adapter_name].weight
        peft_state[key] = peft_state[key].reshape(target.shape)


def _alpha(tensors: Tensors, rank: int) -> float:
    """LyCORIS: a missing (or zero) alpha means alpha = rank, a scale of 1."""
    alpha = tensors.get("alpha")
    value = float(alpha.item()) if alpha is not None else 0.0
    return value or float(rank)


def _require(file_name: str, path: str, tensors: Tensors, *needed: str) -> None:
    missing = [s for s in needed if s not in tensors]
    if missing:
        raise AdapterFileError(f"{file_name}: module {path} lacks {', '.join(missing)} "
                               f"(has {', '.join(sorted(tensors))})")


def _patterns(ranks: dict[str, int], alphas: dict[str, float]) -> dict:
    """Global r/alpha (the most common) plus an explicit rank/alpha for every module."""
    r = Counter(ranks.values()).most_common(1)[0][0]
    alpha = Counter(alphas.values()).most_common(1)[0][0]
    return dict(r=r, alpha=alpha, rank_pattern=dict(ranks), alpha_pattern=dict(alphas),
                target_modules=sorted(ranks))


def _loha(file_name: str, model: nn.Module, mods: dict[str, Tensors]) -> Plan:
    from peft import LoHaConfig

    ranks, alphas, peft_state = {}, {}, {}
    for path, t in mods.items():
        _require(file_name, path, t, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
        rank = t["hada_w1_b"].shape[0]
        ranks[path], alphas[path] = rank, _alpha(t, rank)
        peft_state |= {f"{path}.{s}": t[s] for s in SUFFIXES["LoHa"] if s in t}
    tucker = any("hada_t1" in t for t in mods.values())
    return LoHaConfig(use_effective_conv2d=tucker, **_patterns(ranks, alphas)), peft_state


def _lokr(file_name: str, model: nn.Module, mods: dict[str, Tensors]) -> Plan:
    """peft re-derives each layer's Kronecker shapes from one ``decompose_factor`` and decides
    full vs rank-decomposed factors from ``r``: both are chosen so it builds the file's layout."""
    from peft import LoKrConfig
    from peft.tuners.lokr.layer import factorization

    decompose_both = any("lokr_w1_a" in t for t in mods.values())
    ranks, alphas, peft_state, dims = {}, {}, {}, {}
    for path, t in mods.items():
        if "lokr_w1" not in t:
            _require(file_name, path, t, "lokr_w1_a", "lokr_w1_b")
        if "lokr_w2" not in t:
            _require(file_name, path, t, "lokr_w2_a", "lokr_w2_b")
        base = model.get_submodule(path)
        base = base.get_base_layer() if hasattr(base, "get_base_layer") else base
        out_dim, in_dim = base.weight.shape[:2]
        w1 = t.get("lokr_w1")
        out_l, in_m = tuple(w1.shape) if w1 is not None else (t["lokr_w1_a"].shape[0], t["lokr_w1_b"].shape[1])
        if out_dim % out_l or in_dim % in_m:
            raise AdapterFileError(f"{file_name}: module {path}: lokr_w1 of shape ({out_l}, {in_m}) does "
                                   f"not divide the layer's ({out_dim}, {in_dim})")
        dims[path] = (out_dim, in_dim, out_l, out_dim // out_l, in_m, in_dim // in_m)
        w2_rank = t["lokr_w2_a"].shape[1] if "lokr_w2_a" in t else None
        w1_rank = t["lokr_w1_a"].shape[1] if "lokr_w1_a" in t else None
        decomposed = w1_rank or w2_rank
        # full factors need r >= max(dims)/2 (peft's rule); a decomposed one uses its rank
        rank = decomposed or max(dims[path][2:])
        ranks[path] = rank
        # A1111/LyCORIS: dim = w1_b rank, else w2_b rank; scale alpha/dim, or 1 with no decomposition
        scale = _alpha(t, decomposed) / decomposed if decomposed else 1.0
        alphas[path] = scale * rank
        peft_state |= {f"{path}.{s}": t[s] for s in SUFFIXES["LoKr"] if s in t}
    factor = _decompose_factor(dims, factorization)
    if factor is None:
        raise AdapterFileError(f"{file_name}: its Kronecker factor shapes follow no single LyCORIS "
                               f"factor; not loadable")
    for path, (_, _, out_l, out_k, in_m, in_n) in dims.items():
        r, t = ranks[path], mods[path]
        use_w1 = not (decompose_both and r < max(out_l, in_m) / 2)
        use_w2 = r >= max(out_k, in_n) / 2
        if use_w1 != ("lokr_w1" in t) or use_w2 != ("lokr_w2" in t):
            raise AdapterFileError(f"{file_name}: module {path} mixes full and rank-{r} Kronecker factors "
                                   f"in a layout peft cannot rebuild; not loadable")
    tucker = any("lokr_t2" in t for t in mods.values())
    config = LoKrConfig(decompose_both=decompose_both, decompose_factor=factor,
                       use_effective_conv2d=tucker, **_patterns(ranks, alphas))
    return config, peft_state


def _decompose_factor(dims: dict[str, tuple[int, ...]], factorization) -> int | None:
    """The one factor under which ``factorization`` gives every layer's file shapes (LyCORIS
    writes the smaller factor first, as ``lokr_w1``); -1 is LyCORIS' default."""
    candidates = [-1] + sorted({d[2] for d in dims.values()} | {d[4] for d in dims.values()})
    for factor in candidates:
        if all(factorization(o, factor) == (ol, ok) and factorization(i, factor) == (im, in_)
               for o, i, ol, ok, im, in_ in dims.values()):
            return factor
    return None


def _dora(file_name: str, model: nn.Module, mods: dict[str, Tensors]) -> Plan:
    from peft import LoraConfig

    ranks, alphas, peft_state = {}, {}, {}
    for path, t in mods.items():
        _require(file_name, path, t, "lora_down.weight", "lora_up.weight", "dora_scale")
        down, up, magnitude = t["lora_down.weight"], t["lora_up.weight"], t["dora_scale"]
        out_dim = up.shape[0]
        if magnitude.shape[0] != out_dim or magnitude.numel() != out_dim:
            raise AdapterFileError(
                f"{file_name}: DoRA dora_scale of shape {tuple(magnitude.shape)} on {path} normalises "
                f"per input column (LyCORIS wd_on_out=False); only the per-output-row layout "
                f"({out_dim}, 1) can be loaded (peft's DoRA)")
        rank = down.shape[0]
        ranks[path], alphas[path] = rank, _alpha(t, rank)
        peft_state |= {f"{path}.lora_A.weight": down, f"{path}.lora_B.weight": up,
                       f"{path}.lora_magnitude_vector": magnitude}
    p = _patterns(ranks, alphas)
    config = LoraConfig(r=p["r"], lora_alpha=p["alpha"], rank_pattern=p["rank_pattern"],
                        alpha_pattern=p["alpha_pattern"], target_modules=p["target_modules"], use_dora=True)
    return config, peft_state


_BUILDERS = {"LoHa": _loha, "LoKr": _lokr, "DoRA": _dora}
