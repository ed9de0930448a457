"""tunelab"""
