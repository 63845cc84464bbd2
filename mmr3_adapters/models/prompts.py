"""The prompt formats each checkpoint family expects: one place, named constants, pure functions.

docs/models.md shows the same formats with examples; tests/test_models_settings.py pins them
(its "prompt formats" part), tests/test_models_generation.py checks that the wrappers send them.

- BLIP-2 (OPT and Flan-T5): `BLIP2_PROMPT`, the BLIP-2 paper's zero-shot VQA prompt for OPT (the
  MM-R³ paper gives none; `prompt=` overrides it). The processor prepends the Q-Former's query
  tokens itself; the text holds no image marker.
- LLaVA-1.5 and other llava-hf checkpoints: the processor's own chat template when it has one
  (llava-1.5-*-hf, llava-interleave-qwen, bakLlava ...), fed one user turn with one image item per
  image and the question as text. Without a template, `LLAVA_FALLBACK_PROMPT`, which is what
  llava-1.5-hf's template renders for a single image.
"""

from __future__ import annotations

from typing import Any

IMAGE_TOKEN = "<image>"
BLIP2_PROMPT = "Question: {question} Answer:"
LLAVA_FALLBACK_PROMPT = "USER: {images}{question} ASSISTANT:"
LLAVA_IMAGE_MARKER = IMAGE_TOKEN + "\n"  # repeated once per image in the fallback prompt


def clean_question(context: str) -> str:
    """The task's text with any `<image>` markers removed; images are placed by the format instead."""
    return " ".join(context.replace(IMAGE_TOKEN, " ").split()) if IMAGE_TOKEN in context else context.strip()


def blip2_prompt(context: str, template: str = BLIP2_PROMPT) -> str:
    """The BLIP-2 prompt for a task's text.

    Args:
        context: What lmms-eval's `doc_to_text` returned.
        template: A format with one `{question}` field.

    Returns:
        For the default template, "Question: <text> Answer:".
    """
    return template.format(question=clean_question(context))


def llava_messages(context: str, n_images: int) -> list[dict[str, Any]]:
    """One user turn in the structured form llava-hf chat templates take."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": clean_question(context)})
    return [{"role": "user", "content": content}]


def llava_prompt(context: str, n_images: int, chat_template: str | None, render=None) -> str:
    """The LLaVA prompt for a task's text and its number of images.

    Args:
        context: What lmms-eval's `doc_to_text` returned.
        n_images: Images that go with it; each becomes one `<image>` in the prompt.
        chat_template: The processor's chat template, or None to use `LLAVA_FALLBACK_PROMPT`.
        render: `processor.apply_chat_template` (called with tokenize=False and
            add_generation_prompt=True); required when `chat_template` is given.

    Returns:
        The full prompt text, with `<image>` markers for the processor to expand.
    """
    if chat_template:
        if render is None:
            raise ValueError("llava_prompt: a chat template was given without the processor to render it")
        return render(
            llava_messages(context, n_images),
            chat_template=chat_template,
            tokenize=False,
            add_generation_prompt=True,
        )
    return LLAVA_FALLBACK_PROMPT.format(images=LLAVA_IMAGE_MARKER * n_images, question=clean_question(context))
