"""Streamlit helpers shared by the pages (hft_core itself never imports streamlit)."""
