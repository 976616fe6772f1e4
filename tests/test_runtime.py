from betavae_dist.runtime import keep_heap


def test_keep_heap_switches_glibc_malloc_settings_both_ways():
    assert keep_heap(True) is True
    assert keep_heap(False) is True  # restore the defaults for the rest of the test process
