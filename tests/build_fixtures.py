"""Synthetic sources in each official format, and an OpenAI-compatible test server, for the builder.

Everything is written at test time into a temporary folder: small generated images, the source's
own annotation layout, and a few deliberately bad entries (missing file, corrupt file, a box
outside its image, short questions) whose skipping the tests count.
"""

from __future__ import annotations

import csv
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import ROOT, STYLE_MODELS  # noqa: F401  (the research-use style models: see conftest)

LONG_Q = "In this picture taken outdoors, what is the object number {i} that the person is looking at?"
SHORT_Q = "What is object {i}?"


def synthetic_image(seed: int, width: int = 96, height: int = 72) -> Image.Image:
    """A small deterministic RGB image: a gradient with a few coloured rectangles."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1)
    array = base.astype(np.uint8)
    for _ in range(3):
        x0, y0 = rng.integers(0, width - 8), rng.integers(0, height - 8)
        array[y0 : y0 + rng.integers(4, 20), x0 : x0 + rng.integers(4, 20)] = rng.integers(0, 255, 3)
    return Image.fromarray(array, "RGB")


def save_jpeg(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90)


def write_corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a jpeg at all")


# --------------------------------------------------------------------------- COCO


@dataclass
class CocoFixture:
    root: Path
    good: dict[str, int] = field(default_factory=dict)  # split -> images with an eligible object


def make_coco(root: Path, n_val: int = 6, n_train: int = 8, year: str = "2017") -> CocoFixture:
    """instances_{val,train}<year>.json + images. Per split: n good images (one object of area
    ratio 0.15, one tiny object), plus one image whose only object is too small, one crowd-only
    image, one with its box outside the image, one missing file and one corrupt file."""
    fx = CocoFixture(root)
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
    next_id = 1
    for split, n in (("val", n_val), ("train", n_train)):
        images, annotations = [], []
        folder = root / f"{split}{year}"
        w, h = 96, 72
        kinds = ["good"] * n + ["small", "crowd", "outside", "missing", "corrupt"]
        for i, kind in enumerate(kinds):
            image_id = (1000 if split == "val" else 5000) + i
            name = f"{image_id:012d}.jpg"
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
            if kind == "missing":
                pass
            elif kind == "corrupt":
                write_corrupt(folder / name)
            else:
                save_jpeg(folder / name, synthetic_image(image_id, w, h))
            area = 0.15 * w * h
            box = [10.0, 8.0, 40.0, 30.0]  # 1200 px of 6912: ratio 0.17 as a box, area says 0.15
            ann = {"id": next_id, "image_id": image_id, "category_id": [1, 3, 18][i % 3], "iscrowd": 0}
            next_id += 1
            if kind == "small":
                annotations.append({**ann, "area": 0.02 * w * h, "bbox": [1.0, 1.0, 10.0, 10.0]})
                continue
            if kind == "crowd":
                annotations.append({**ann, "area": area, "bbox": box, "iscrowd": 1})
                continue
            if kind == "outside":
                annotations.append({**ann, "area": area, "bbox": [80.0, 60.0, 40.0, 30.0]})
                continue
            annotations.append({**ann, "area": area, "bbox": box})
            annotations.append({**ann, "id": next_id, "area": 5.0, "bbox": [0.0, 0.0, 2.0, 2.0]})
            next_id += 1
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}{year}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories})
        )
        fx.good["test" if split == "val" else "train"] = n
    return fx


# --------------------------------------------------------------------------- OK-VQA and InfographicsVQA


def make_okvqa(root: Path, n_val_images: int = 4, n_train_images: int = 4, per_image: int = 2) -> dict[str, int]:
    """OK-VQA questions/annotations + COCO 2014 images; per image `per_image` long questions and
    one short one (filtered). Returns eligible questions per split. One val image is missing."""
    counts = {}
    qid = 1
    for official, n in (("val", n_val_images), ("train", n_train_images)):
        questions, annotations = [], []
        for i in range(n):
            image_id = (10 if official == "val" else 500) + i
            if not (official == "val" and i == n - 1):  # the last val image is missing on disk
                save_jpeg(
                    root / f"{official}2014" / f"COCO_{official}2014_{image_id:012d}.jpg", synthetic_image(image_id)
                )
            for j in range(per_image + 1):
                text = SHORT_Q.format(i=qid) if j == per_image else LONG_Q.format(i=qid)
                questions.append({"image_id": image_id, "question": text, "question_id": qid})
                answers = [
                    {"answer": "dog", "raw_answer": "dogs", "answer_confidence": "yes", "answer_id": k}
                    for k in range(6)
                ]
                answers += [
                    {"answer": "cat", "raw_answer": "cat", "answer_confidence": "yes", "answer_id": 6 + k}
                    for k in range(4)
                ]
                annotations.append(
                    {"image_id": image_id, "question_id": qid, "answers": answers, "question_type": "other"}
                )
                qid += 1
        (root / f"OpenEnded_mscoco_{official}2014_questions.json").write_text(json.dumps({"questions": questions}))
        (root / f"mscoco_{official}2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
        counts["test" if official == "val" else "train"] = n * per_image
    return counts


def make_infovqa(root: Path, n_val: int = 3, n_train: int = 3) -> dict[str, int]:
    """infographicsVQA_{val,train}_v1.0.json + images; one long and one short question per image;
    the first val image is corrupt."""
    counts = {}
    qid = 90000
    for official, n in (("val", n_val), ("train", n_train)):
        data = []
        for i in range(n):
            name = f"{official}_{i}.jpeg"
            path = root / "infographicsvqa_images" / name
            if official == "val" and i == 0:
                write_corrupt(path)
            else:
                save_jpeg(path, synthetic_image(qid, 64, 128))
            for text in (LONG_Q.format(i=qid), SHORT_Q.format(i=qid)):
                data.append(
                    {
                        "questionId": qid,
                        "question": text,
                        "image_local_name": name,
                        "answers": ["42", "42 ", "forty-two"],
                    }
                )
                qid += 1
        (root / f"infographicsVQA_{official}_v1.0.json").write_text(
            json.dumps({"dataset_split": official, "data": data})
        )
        counts["test" if official == "val" else "train"] = n
    return counts


# --------------------------------------------------------------------------- GLDv2 and MIT Indoor

LANDMARK_CATEGORIES = {
    "1": "http://commons.wikimedia.org/wiki/Category:Tab%C3%A1n",
    "2": "http://commons.wikimedia.org/wiki/Category:Tsim_Sha_Tsui",
    "3": "http://commons.wikimedia.org/wiki/Category:St._Mary%27s_Church_(Gda%C5%84sk)",
    "4": "http://commons.wikimedia.org/wiki/Category:Hammershus",
}


def make_gldv2(root: Path, n_landmarks: int = 40, per_landmark: int = 2) -> int:
    """train.csv + train_label_to_category.csv + train/a/b/c/<id>.jpg. Landmarks 1-4 carry real
    (URL-encoded) names; the others get `Landmark_<n>`; landmark 9999 has no category."""
    rows = []
    categories = dict(LANDMARK_CATEGORIES)
    for lm in range(1, n_landmarks + 1):
        categories.setdefault(str(lm), f"http://commons.wikimedia.org/wiki/Category:Landmark_{lm}")
        for k in range(per_landmark):
            image_id = f"{lm:04x}{k:02x}abcdef0123"
            rows.append((image_id, f"http://example.org/{image_id}.jpg", str(lm)))
            save_jpeg(
                root / "train" / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg",
                synthetic_image(lm * 10 + k, 80, 60),
            )
    rows.append(("ffff00abcdef0123", "http://example.org/x.jpg", "9999"))
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "url", "landmark_id"])
        w.writerows(rows)
    with open(root / "train_label_to_category.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["landmark_id", "category"])
        w.writerows(sorted(categories.items(), key=lambda kv: int(kv[0])))
    return n_landmarks


MIT_CLASSES = ("fastfood_restaurant", "kindergarden", "videostore")


def make_mit_indoor(root: Path, per_class_test: int = 3, per_class_train: int = 4) -> dict[str, int]:
    test, train = [], []
    for c, cls in enumerate(MIT_CLASSES):
        for k in range(per_class_test + per_class_train):
            rel = f"{cls}/{cls}_{k:04d}.jpg"
            save_jpeg(root / "Images" / rel, synthetic_image(700 + c * 50 + k, 84, 64))
            (test if k < per_class_test else train).append(rel)
    (root / "TestImages.txt").write_text("\n".join(test) + "\n")
    (root / "TrainImages.txt").write_text("\n".join(train) + "\n")
    return {"test": len(test), "train": len(train)}


def make_all_sources(root: Path) -> dict[str, Path]:
    paths = {name: root / name for name in ("okvqa", "infovqa", "gldv2", "mit_indoor", "coco")}
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
    make_okvqa(paths["okvqa"])
    make_infovqa(paths["infovqa"])
    make_gldv2(paths["gldv2"])
    make_mit_indoor(paths["mit_indoor"])
    make_coco(paths["coco"])
    return paths


# --------------------------------------------------------------------------- a local rephrasing model

VOCABULARY_WORDS = set(
    "1. 2. 3. i have a question what is the dog please give me three different types of rephrased questions "
    "to which answer would be ?".split()
)


def make_tiny_lm(folder: Path) -> Path:
    """A tiny random GPT-2 with a word-level tokenizer over VOCABULARY_WORDS, saved to `folder`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", "\n", *sorted(VOCABULARY_WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)  # the same random weights every run, so the replies are the same too
    config = GPT2Config(
        vocab_size=len(vocab), n_positions=128, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=1
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- OpenAI-compatible server

_QUESTION = re.compile(r"I have a question: (.*) Please give me three different types of rephrased questions", re.S)


def reply_for(prompt: str) -> str:
    """A deterministic, usable reply: three numbered rephrasings of the prompt's question. A
    question containing NOQUESTION gets a reply with no questions; DUPLICATE gets duplicates."""
    m = _QUESTION.search(prompt)
    q = (m.group(1) if m else prompt).strip().rstrip("?")
    if "NOQUESTION" in q:
        return "I am sorry, I cannot help with that."
    if "DUPLICATE" in q:
        return f"1. {q}?\n2. {q}?\n3. {q}?"
    return (
        f"Here are three rephrasings:\n1. Could you tell me: {q}?\n2. R2: Put differently, {q}?\n"
        f'3) "Asked another way, {q}?"'
    )


class ChatServer:
    """A real HTTP server on 127.0.0.1 playing an OpenAI-compatible /v1/chat/completions.

    Attributes:
        latency: seconds before each answer.
        api_key: the only key accepted (401 otherwise); None accepts any.
        models: model names known (404 otherwise).
        faults: prompt substring -> list of faults for its first attempts, in order: "429", "500",
            "malformed", "slow" (sleeps `slow_s`, past the client's timeout), "empty-choices".
        log: every request's prompt, in arrival order; in_flight / max_in_flight: concurrency seen.
        authorizations: every request's Authorization header (None when it sent none).
        gather: hold the answers until this many requests are in flight at once (at most 10 s), so
            that a client's concurrency shows in max_in_flight however loaded the machine is.
    """

    def __init__(
        self,
        latency: float = 0.0,
        api_key: str | None = "sk-test",
        models=("gpt-test",),
        slow_s: float = 2.0,
        gather: int = 0,
    ):
        self.latency = latency
        self.gather = gather
        self._gathered = threading.Event()
        self.api_key = api_key
        self.models = set(models)
        self.slow_s = slow_s
        self.faults: dict[str, list[str]] = {}
        self.log: list[str] = []
        self.authorizations: list[str | None] = []
        self.statuses: Counter = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._attempts: Counter = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                with server._lock:
                    server.statuses[status] += 1

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.authorizations.append(self.headers.get("Authorization"))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    if server.in_flight >= server.gather:
                        server._gathered.set()
                try:
                    self._handle(payload)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _handle(self, payload: dict):
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": {"message": "no such route"}}')
                if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._send(401, b'{"error": {"message": "Incorrect API key provided"}}')
                if payload.get("model") not in server.models:
                    return self._send(
                        404, json.dumps({"error": {"message": f"model {payload.get('model')} not found"}}).encode()
                    )
                prompt = payload["messages"][-1]["content"]
                with server._lock:
                    server.log.append(prompt)
                    attempt = server._attempts[prompt]
                    server._attempts[prompt] += 1
                fault = None
                for needle, plan in server.faults.items():
                    if needle in prompt and attempt < len(plan):
                        fault = plan[attempt]
                if server.gather:
                    server._gathered.wait(timeout=10)
                if server.latency:
                    time.sleep(server.latency)
                if fault == "429":
                    return self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0.05"})
                if fault in ("500", "503"):
                    return self._send(int(fault), b'{"error": {"message": "internal"}}')
                if fault == "malformed":
                    return self._send(200, b'{"choices": [{"message": {"content": "unterminated')
                if fault == "empty-choices":
                    return self._send(200, b'{"choices": []}')
                if fault == "slow":
                    time.sleep(server.slow_s)
                body = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "model": payload["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply_for(prompt)},
                            "finish_reason": "stop",
                        }
                    ],
                }
                return self._send(200, json.dumps(body).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- hub layouts (local folders)


def _jpeg_bytes(seed: int, width: int = 96, height: int = 72) -> bytes:
    import io

    buf = io.BytesIO()
    synthetic_image(seed, width, height).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _write_hub_folder(root: Path, splits: dict, features) -> None:
    """A folder laid out like a hub dataset repo: data/<split>-00000-of-00001.parquet + a card
    whose YAML names the splits (what `datasets.load_dataset(<folder>)` reads)."""
    import datasets

    (root / "data").mkdir(parents=True, exist_ok=True)
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split, columns in splits.items():
        datasets.Dataset.from_dict(columns, features=features).to_parquet(
            str(root / "data" / f"{split}-00000-of-00001.parquet")
        )
        lines += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
    (root / "README.md").write_text("\n".join(lines + ["---", ""]))


def make_okvqa_hub(root: Path) -> None:
    """lmms-eval's OK-VQA layout: question, question_id, image_id, answers (10), image; split val2014."""
    import datasets

    features = datasets.Features(
        {
            "question": datasets.Value("string"),
            "question_id": datasets.Value("int64"),
            "image_id": datasets.Value("int64"),
            "answers": datasets.Sequence(datasets.Value("string")),
            "image": datasets.Image(),
        }
    )
    rows = {"question": [], "question_id": [], "image_id": [], "answers": [], "image": []}
    for i in range(4):
        rows["question"].append(LONG_Q.format(i=i) if i < 3 else SHORT_Q.format(i=i))
        rows["question_id"].append(100 + i)
        rows["image_id"].append(7 + i // 2)
        rows["answers"].append(["tree"] * 7 + ["trees"] * 3)
        rows["image"].append({"bytes": _jpeg_bytes(i), "path": None})
    _write_hub_folder(root, {"val2014": rows}, features)


def make_infovqa_hub(root: Path) -> None:
    """lmms-eval's DocVQA/InfographicVQA layout: questionId, question, answers, image_url, image;
    splits validation and test (the test split has no answers)."""
    import datasets

    features = datasets.Features(
        {
            "questionId": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": datasets.Sequence(datasets.Value("string")),
            "image_url": datasets.Value("string"),
            "image": datasets.Image(),
        }
    )
    splits = {}
    for split in ("validation", "test"):
        rows = {"questionId": [], "question": [], "answers": [], "image_url": [], "image": []}
        for i in range(3):
            rows["questionId"].append(f"{split}{i}")
            rows["question"].append(LONG_Q.format(i=i))
            rows["answers"].append(["12%"] if split == "validation" else [])
            rows["image_url"].append(f"https://example.org/{split}{i}.jpeg")
            rows["image"].append({"bytes": _jpeg_bytes(50 + i, 64, 128), "path": None})
        splits[split] = rows
    _write_hub_folder(root, splits, features)


def make_coco_hub(root: Path) -> None:
    """detection-datasets/coco layout: image_id, image, width, height, objects{bbox_id, category,
    bbox (x0, y0, x1, y1), area}; splits train and val."""
    import datasets

    names = ["person", "bicycle", "car"]
    features = datasets.Features(
        {
            "image_id": datasets.Value("int64"),
            "image": datasets.Image(),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "objects": datasets.Sequence(
                {
                    "bbox_id": datasets.Value("int64"),
                    "category": datasets.ClassLabel(names=names),
                    "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
                    "area": datasets.Value("float32"),
                }
            ),
        }
    )
    splits = {}
    for split, base in (("train", 0), ("val", 100)):
        rows = {"image_id": [], "image": [], "width": [], "height": [], "objects": []}
        for i in range(4):
            rows["image_id"].append(base + i)
            rows["image"].append({"bytes": _jpeg_bytes(base + i), "path": None})
            rows["width"].append(96)
            rows["height"].append(72)
            area = 0.2 * 96 * 72 if i < 3 else 0.5 * 96 * 72  # the last image has no eligible object
            rows["objects"].append(
                {"bbox_id": [base * 10 + i], "category": [i % 3], "bbox": [[8.0, 6.0, 60.0, 50.0]], "area": [area]}
            )
        splits[split] = rows
    _write_hub_folder(root, splits, features)


def style_dir(root: Path) -> Path:
    """Johnson's ONNX models when the shared folder is here, else random TransformerNet checkpoints."""
    if STYLE_MODELS.is_dir():
        return STYLE_MODELS
    import torch

    from mmr3_tasks.builder.styles import transformer_net

    folder = root / "style-models"
    folder.mkdir(exist_ok=True)
    for seed, name in enumerate(("candy", "mosaic", "udnie")):
        torch.manual_seed(seed)
        torch.save(transformer_net().state_dict(), folder / f"{name}.pth")
    return folder
