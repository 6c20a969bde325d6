"""Where soft labels come from and go to: synthetic images and their augmented views, teachers, SRe2L label
files, label targets for training, and export back to label files."""
