"""Writes an embedded synthetic dataset to disk in a real dataset's layout.

  python -m medgan_jax.data.synthetic --kind=lesions --layout=folder --num=2000 --out=/tmp/lesions
  python -m medgan_jax.data.synthetic --kind=cxr --layout=chexpert --num=2000 --out=/tmp/chexpert

--size (default 64) and --seed (default 0) pick the images; the same flags write the same files.

Supported --kind/--layout pairs: lesions/folder (Kaggle 'Skin Cancer: Malignant vs. Benign'
tree OUT/{train,test}/{benign,malignant}/*.jpg, stratified test split) and cxr/chexpert
(OUT/CheXpert-v1.0-small/{train,valid}.csv + JPEGs, exactly like the real download).
"""

from medgan_jax.data.synthetic.cli import main

if __name__ == "__main__":
    main()
