#!/usr/bin/env bash
# Worked example: every hello-labels command, on the artefacts `hello-labels demo` leaves behind
# (a Fashion-MNIST synthetic set, its ConvNet teacher and 40 epochs of SRe2L-format label files).
#   bash examples/pipeline.sh                 # DEMO=demo-out RUNS=runs STEPS=400 by default
set -euo pipefail
DEMO=${DEMO:-demo-out}
RUNS=${RUNS:-runs}
STEPS=${STEPS:-400}
[ -d "$DEMO/synthetic" ] || hello-labels demo --out "$DEMO"

TEACHER="module:hello_labels.train.students:conv_net@$DEMO/teacher.safetensors"
DATA=(--data "$DEMO/synthetic" --input-size 28 --min-scale 0.5 --mean 0.286,0.286,0.286 --std 0.353,0.353,0.353)
BASE=(--base hello-labels:tiny-clip-vit --templates simple --head-rank 8)
TRAIN=(--steps "$STEPS" --batch-size 32 --lr 1e-2 --loss kl -T 1 --quiet)

# 1. distil a projector from the teacher (kill it and rerun with --resume: same adapter)
hello-labels distill "${DATA[@]}" --teacher "$TEACHER" "${BASE[@]}" "${TRAIN[@]}" --out "$RUNS/distilled"

# 2. convert the stored label files into a second adapter, no teacher needed
hello-labels convert "${DATA[@]}" --labels "$DEMO/labels" "${BASE[@]}" "${TRAIN[@]}" --out "$RUNS/converted"

# 3. fidelity on held-out augmented views, against the teacher and against the stored labels
hello-labels eval "$RUNS/distilled" "${DATA[@]}" --teacher "$TEACHER" --views 500 --json "$RUNS/distilled/fidelity.json"
hello-labels eval "$RUNS/converted" "${DATA[@]}" --labels "$DEMO/labels" --views 500

# 4. what each way of supplying labels costs on disk, for this very label directory
hello-labels storage --labels "$DEMO/labels" --projector "$RUNS/distilled" --teacher "$DEMO/teacher.safetensors"

# 5. regenerate SRe2L-format label files from the adapter (for codebases that only read files)
hello-labels export-fkd "$RUNS/distilled" --data "$DEMO/synthetic" --out "$RUNS/fkd-from-projector" \
    --epochs 5 --batch-size 10 --mix-type cutmix --fp16 --input-size 28 --min-scale 0.5 --quiet

# 6. nudge the synthetic images so projector and teacher agree more (a new folder; the input is untouched)
hello-labels refine "$RUNS/distilled" --data "$DEMO/synthetic" --teacher "$TEACHER" --out "$RUNS/synthetic-refined" \
    --input-size 28 --min-scale 0.5 --steps 20 --eval-views 200 --quiet
