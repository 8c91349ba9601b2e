"""`hf-facerec pretrain`: self-supervised pre-training (SwAV, DINO, SimSiam) of a backbone on unlabelled faces
(:mod:`hf_facerec.representation`); the result is a plain backbone folder for `hf-facerec train --backbone`.

    hf-facerec pretrain --images faces/ --backbone '{"model_type": "vit", "hidden_size": 192, "num_hidden_layers": 6,
        "num_attention_heads": 3, "intermediate_size": 768, "patch_size": 8}' --image-size 64 --method swav \\
        --max-steps 2000 --output runs/ssl_swav
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="image folder, .parquet file/folder/glob or save_to_disk folder")
    parser.add_argument("--backbone", required=True,
                        help="backbone config: JSON object, JSON file or a model folder's config (random weights); "
                             "with --from-weights a backbone folder whose weights to continue from")
    parser.add_argument("--from-weights", action="store_true", help="start from --backbone's weights")
    parser.add_argument("--output", required=True, help="run folder (checkpoints, backbone/, pretrain_results.json)")
    parser.add_argument("--method", default="swav", choices=["swav", "dino", "simsiam"])
    parser.add_argument("--image-size", type=int, default=112, help="global crop side (px)")
    parser.add_argument("--local-size", type=int, default=48, help="local crop side (px)")
    parser.add_argument("--n-local", type=int, default=4, help="local crops per image (multi-crop)")
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--save-steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", default=None, help="checkpoint folder, 'last' or 'auto'")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--streaming", action="store_true", help="stream the dataset (no exact resume)")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--model-options", default=None,
                        help='SSLModel options as JSON, e.g. \'{"n_prototypes": 512, "projection_dim": 128}\'')


def run(args: argparse.Namespace) -> int:
    from hf_facerec.representation.pretrain import pretrain
    from hf_facerec.training.checkpoints import resolve_resume_checkpoint

    try:
        options = json.loads(args.model_options) if args.model_options else None
    except json.JSONDecodeError as error:
        raise ValueError(f"--model-options is not JSON: {error}") from error
    resume = resolve_resume_checkpoint(args.output, args.resume) if args.resume else None
    results = pretrain(args.images, args.output, args.backbone, args.method, args.image_size, args.local_size,
                       args.n_local, args.max_steps, args.batch_size, args.lr, save_steps=args.save_steps,
                       seed=args.seed, resume=resume, image_column=args.image_column, streaming=args.streaming,
                       max_images=args.max_images, from_weights=args.from_weights, workers=args.workers,
                       model_options=options)
    print(json.dumps(results, indent=2))
    return 0
