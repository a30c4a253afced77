#!/usr/bin/env bash
# The CPU training runs that produced weights/*.pt (2-core machine, no GPU lent). Each run is bounded by wall
# time; validation is left to `rgbt evaluate` on the full test sets afterwards (see weights/README.md).
set -euo pipefail
export WANDB_MODE=${WANDB_MODE:-offline}
common=(--trainer.limit_val_batches 0 --trainer.num_sanity_val_steps 0 --trainer.enable_progress_bar false
        --trainer.log_every_n_steps 5 --data.num_workers 1)

rgbt fit --config experiments/densefuse.yaml "${common[@]}" --trainer.max_time 00:00:08:00 \
  --trainer.callbacks.init_args.every_n_train_steps 20
rgbt export --ckpt runs/densefuse/last.ckpt --out weights/densefuse_stage1.pt --overwrite \
  --meta data=roadscene/train command="scripts/train_cpu.sh (densefuse stage 1)"

rgbt fit --config experiments/swinfusion.yaml "${common[@]}" --trainer.max_time 00:00:25:00 \
  --trainer.callbacks.init_args.every_n_train_steps 10 \
  --data.patch_size 64 --data.batch_size 4 --model.init_args.lr 2.0e-4
rgbt export --ckpt runs/swinfusion/last.ckpt --out weights/swinfusion.pt --overwrite \
  --meta data=roadscene/train command="scripts/train_cpu.sh (swinfusion)"

# DDcGAN phase 1: the paper's objective (content warm-up, then the adversarial game). With manual optimisation
# the global step advances by the D and G step counts of each batch, so checkpoint by wall time.
rgbt fit --config experiments/ddcgan.yaml "${common[@]}" --trainer.max_time 00:00:30:00 \
  --trainer.callbacks.init_args.train_time_interval 0:02:00 \
  --data.batch_size 8 --model.init_args.content_warmup 60
rgbt export --ckpt runs/ddcgan/last.ckpt --out runs/ddcgan/phase1.pt --overwrite \
  --meta data=roadscene/train command="scripts/train_cpu.sh (ddcgan phase 1)"
# DDcGAN phase 2: the adversarial game with the default objective as content term (from runs/ddcgan/phase1.pt)
rgbt fit --config experiments/ddcgan_finetune.yaml "${common[@]}" --trainer.max_time 00:00:52:00 \
  --trainer.callbacks.init_args.train_time_interval 0:02:00 --data.batch_size 8
rgbt export --ckpt runs/ddcgan_finetune/last.ckpt --out weights/ddcgan.pt --overwrite \
  --meta data=roadscene/train command="scripts/train_cpu.sh (ddcgan phase 1 + phase 2 with the default objective)"

# DenseFuse stage 2: fine-tune the decoder on fused features (init: weights/densefuse_stage1.pt)
rgbt fit --config experiments/densefuse_decoder.yaml "${common[@]}" --trainer.max_time 00:00:06:00 \
  --trainer.callbacks.init_args.every_n_train_steps 10
rgbt export --ckpt runs/densefuse_decoder/last.ckpt --out weights/densefuse.pt --overwrite \
  --meta data=roadscene/train command="scripts/train_cpu.sh (densefuse stage 1 + decoder)"

# CDDFuse: phase I (autoencoder + decomposition loss) for 250 steps, then phase II (fusion), batch 8 of 64x64,
# Adam 5e-4 without decay (the official 1e-4 with halving is for 120 epochs), gradient norm clipped at 0.01
rgbt fit --config experiments/cddfuse.yaml "${common[@]}" --trainer.max_time 00:00:45:00 \
  --trainer.callbacks.init_args.every_n_train_steps 20 --data.patch_size 64 --data.batch_size 8 \
  --model.init_args.phase1_steps 250 --model.init_args.lr 5.0e-4 --model.init_args.lr_milestones '[]'
rgbt export --ckpt runs/cddfuse/last.ckpt --out weights/cddfuse.pt --overwrite \
  --meta data=roadscene/train command="scripts/train_cpu.sh (cddfuse)"
