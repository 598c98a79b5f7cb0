"""plan layer"""
