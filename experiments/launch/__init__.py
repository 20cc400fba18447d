"""Launch recipes for multi-host pretraining (recipes.py renders them and the scripts in this folder)."""
