"""run layer"""
