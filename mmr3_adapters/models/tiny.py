"""Tiny random LLaVA-1.5 and BLIP-2 checkpoints, built offline into a folder.

For tests, benchmarks and the offline `mmr3 demo`: nothing is downloaded. The tokenizer is a
byte-level BPE trained with `tokenizers` on an inline corpus; the image processors get explicit
arguments; the weights are random but seeded, so a folder built twice holds the same model. The
answers are random bytes: these models exercise the plumbing, never the benchmark.

Two choices keep them usable as stand-ins (transformers 5.x pitfalls found while building them):

- LLaVA's processor gets the llava-1.5-hf chat template (one `<image>` per image item), extended to
  accept plain-string content too, so both our wrapper and lmms-eval's `llava_hf` can prompt it.
- The output-embedding rows of the special tokens and of the newline byte are zeroed. A zero row
  scores 0 while some of the hundreds of random rows score above it, so greedy decoding never picks
  EOS / pad / `<image>` / "\n": answers are never empty, are never cut by lmms-eval's default
  `until: ["\n\n"]`, and always run to `max_new_tokens`, which keeps benchmarks comparable.

CLI: `python -m mmr3_adapters.models.tiny llava|blip2-opt|blip2-t5 OUT_DIR`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from mmr3_adapters.models.prompts import IMAGE_TOKEN

SEED = 0
VOCAB_SIZE = 400
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD, IMAGE_TOKEN]  # ids 0..4, in this order
IMAGE_TOKEN_ID = SPECIAL_TOKENS.index(IMAGE_TOKEN)
NEWLINE_BYTE_TOKEN = "Ċ"  # "\n" in the byte-level alphabet; CORPUS has no newline, so no merge holds one
IMAGE_SIZE = 32
PATCH_SIZE = 8
BLIP2_QUERY_TOKENS = 4
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Enough text for a BPE with a few hundred merges; the benchmark's own prompts are in it so that
# they tokenise into words, not bytes.
CORPUS = [
    "USER: ASSISTANT: Question: Answer: What is shown in this picture?",
    "Please describe the place in the image in two sentences.",
    "What kind of object is in the masked region?",
    "A chat between a curious user and an artificial intelligence assistant.",
    "The astronaut stands next to a flag. A cat sleeps on the coffee table near the rocket.",
    "The photo shows a landmark, a church, a bridge, a tower, a museum and a busy street.",
    "Which colour is the car? How many people are in the room? Where was this photo taken?",
    "red green blue yellow black white grey orange purple brown pink",
    "one two three four five six seven eight nine ten",
] * 4

# llava-hf/llava-1.5-7b-hf's chat template, plus a branch for plain-string content (lmms-eval's
# simple `llava_hf` passes strings). For structured content the output is the original's.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyLlavaSize:
    """Dimensions of a tiny LLaVA. The defaults build a ~70k-parameter model in about a second.

    The benchmark uses a wider, deeper language model so that generation, not overhead, is timed.
    """

    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 2
    vision_hidden: int = 32
    vision_layers: int = 2
    # Std of the language model's random weights (transformers' default 0.02). Larger values give
    # sharper logits and layers whose outputs matter next to the residual stream, so that a prefix
    # can change what the model says: the adapter's learning test uses that.
    initializer_range: float = 0.02


def build_tokenizer(backbone: str = "llama", declare_image_token: bool = False):
    """A byte-level BPE tokenizer (vocabulary 400) with `<unk> <s> </s> <pad> <image>` as ids 0-4.

    Args:
        backbone: "llama" / "opt" prepend `<s>` like those tokenizers; "t5" appends `</s>` instead.
        declare_image_token: Sets `tokenizer.image_token` (LlavaProcessor reads it). Leave False
            for BLIP-2: Blip2Processor calls `.content` on it and fails on a str (notes appendix §4).

    Returns:
        A `PreTrainedTokenizerFast` that emits only input_ids and attention_mask.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if backbone not in ("llama", "opt", "t5"):
        raise ValueError(f"backbone must be 'llama', 'opt' or 't5', got {backbone!r}")
    tk = Tokenizer(models.BPE(unk_token=UNK))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(CORPUS, trainer=trainer)
    if backbone == "t5":
        tk.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, SPECIAL_TOKENS.index(EOS))]
        )
    else:
        tk.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, SPECIAL_TOKENS.index(BOS))]
        )
    extra = {"extra_special_tokens": {"image_token": IMAGE_TOKEN}} if declare_image_token else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        # token_type_ids would reach generate() and fail there (notes appendix §1f).
        model_input_names=["input_ids", "attention_mask"],
        **extra,
    )


def llava_processor(image_size: int, patch_size: int):
    """A llava-1.5-hf style processor (CLIP preprocessing, chat template) over the tiny tokenizer."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        do_resize=True,
        do_normalize=True,
        do_convert_rgb=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer("llama", declare_image_token=True),
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=LLAVA_CHAT_TEMPLATE,
    )


def blip2_processor(backbone: str, image_size: int, num_query_tokens: int):
    """A Salesforce/blip2-* style processor (straight resize, query placeholders) over the tiny tokenizer."""
    from transformers import Blip2Processor, BlipImageProcessor

    image_processor = BlipImageProcessor(
        size={"height": image_size, "width": image_size},
        do_resize=True,
        do_normalize=True,
        do_convert_rgb=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    # Blip2Processor adds `<image>` itself (already id 4) when the tokenizer does not declare it.
    return Blip2Processor(
        image_processor=image_processor, tokenizer=build_tokenizer(backbone), num_query_tokens=num_query_tokens
    )


def build_tiny_llava(path: str | Path, size: TinyLlavaSize | None = None, seed: int = SEED) -> Path:
    """Builds a random LLaVA-1.5-style checkpoint (CLIP vision tower, Llama LM) into `path`.

    Args:
        path: Output folder, created if needed; `from_pretrained(path)` loads model and processor.
        size: Dimensions; the default is the smallest that runs.
        seed: Seeds the weights; equal seeds build equal models.

    Returns:
        The folder, as a Path.
    """
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    size = size or TinyLlavaSize()
    out = Path(path)
    processor = llava_processor(IMAGE_SIZE, PATCH_SIZE)
    tokenizer = processor.tokenizer
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=size.vision_hidden,
            intermediate_size=2 * size.vision_hidden,
            num_hidden_layers=size.vision_layers,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
        ),
        text_config=LlamaConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=size.text_hidden,
            intermediate_size=2 * size.text_hidden,
            num_hidden_layers=size.text_layers,
            num_attention_heads=size.text_heads,
            num_key_value_heads=size.text_heads,
            max_position_embeddings=512,
            bos_token_id=SPECIAL_TOKENS.index(BOS),
            eos_token_id=SPECIAL_TOKENS.index(EOS),
            pad_token_id=SPECIAL_TOKENS.index(PAD),
            tie_word_embeddings=False,
            initializer_range=size.initializer_range,
        ),
        image_token_index=IMAGE_TOKEN_ID,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    _silence_tokens(model.get_output_embeddings(), tokenizer)
    _set_generation_defaults(model)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_blip2(path: str | Path, backbone: str = "opt", seed: int = SEED) -> Path:
    """Builds a random BLIP-2 checkpoint (ViT, Q-Former, OPT or T5 language model) into `path`.

    Args:
        path: Output folder, created if needed.
        backbone: "opt" (decoder-only, like blip2-opt-*) or "t5" (encoder-decoder, like blip2-flan-t5-*).
        seed: Seeds the weights.

    Returns:
        The folder, as a Path.
    """
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        OPTConfig,
        T5Config,
    )

    ids = {tok: SPECIAL_TOKENS.index(tok) for tok in (BOS, EOS, PAD)}
    if backbone == "opt":
        text_config = OPTConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            word_embed_proj_dim=32,
            max_position_embeddings=512,
            bos_token_id=ids[BOS],
            eos_token_id=ids[EOS],
            pad_token_id=ids[PAD],
            tie_word_embeddings=False,
        )
    elif backbone == "t5":
        text_config = T5Config(
            vocab_size=VOCAB_SIZE,
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=2,
            feed_forward_proj="gated-gelu",  # as Flan-T5
            eos_token_id=ids[EOS],
            pad_token_id=ids[PAD],
            decoder_start_token_id=ids[PAD],  # T5 starts decoding from its pad token
            tie_word_embeddings=False,
        )
    else:
        raise ValueError(f"backbone must be 'opt' or 't5', got {backbone!r}")

    out = Path(path)
    processor = blip2_processor(backbone, IMAGE_SIZE, BLIP2_QUERY_TOKENS)
    tokenizer = processor.tokenizer
    config = Blip2Config(
        vision_config=Blip2VisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
        ).to_dict(),
        qformer_config=Blip2QFormerConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            encoder_hidden_size=32,
        ).to_dict(),
        text_config=text_config.to_dict(),
        num_query_tokens=BLIP2_QUERY_TOKENS,
        image_token_index=IMAGE_TOKEN_ID,
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    _silence_tokens(model.get_output_embeddings(), tokenizer)
    _set_generation_defaults(model)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _silence_tokens(lm_head, tokenizer) -> None:
    """Zeroes the output rows of the special tokens and "\n", so greedy decoding never emits them."""
    import torch

    newline = tokenizer.convert_tokens_to_ids(NEWLINE_BYTE_TOKEN)
    with torch.no_grad():
        lm_head.weight[: len(SPECIAL_TOKENS)] = 0.0
        lm_head.weight[newline] = 0.0


def _set_generation_defaults(model) -> None:
    # Random models should not carry sampling defaults that differ between transformers releases.
    gc = model.generation_config
    gc.bos_token_id = SPECIAL_TOKENS.index(BOS)
    gc.eos_token_id = SPECIAL_TOKENS.index(EOS)
    gc.pad_token_id = SPECIAL_TOKENS.index(PAD)


BUILDERS = {
    "llava": lambda out: build_tiny_llava(out),
    "blip2-opt": lambda out: build_tiny_blip2(out, backbone="opt"),
    "blip2-t5": lambda out: build_tiny_blip2(out, backbone="t5"),
}


def main(argv: list[str] | None = None) -> int:
    """`python -m mmr3_adapters.models.tiny llava|blip2-opt|blip2-t5 OUT_DIR`: builds one tiny model."""
    parser = argparse.ArgumentParser(
        prog="python -m mmr3_adapters.models.tiny",
        description="Build a tiny random LLaVA / BLIP-2 checkpoint offline (for tests and demos only).",
    )
    parser.add_argument("family", choices=sorted(BUILDERS))
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    path = BUILDERS[args.family](args.out_dir)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
