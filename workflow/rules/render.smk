# render rules (being written)
