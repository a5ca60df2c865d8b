"""The real CheXpert download's layout: folder names, CSV columns and the 14 labels."""

CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
# Folder of the downscaled download, and every name the dataset folder goes by; CSV paths
# start with the folder's own name.
CHEXPERT_DIR = "CheXpert-v1.0-small"
CHEXPERT_DIRS = (CHEXPERT_DIR, "CheXpert-v1.0")
# Columns of train.csv / valid.csv before the labels, then the full header.
CHEXPERT_META_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
CHEXPERT_CSV_HEADER = (*CHEXPERT_META_COLUMNS, *CHEXPERT_LABELS)
