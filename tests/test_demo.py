"""`coadv demo` reports test numbers of the checkpoint chosen on validation, and says so."""

import csv
import re
import shutil

from coadv import demo


def test_demo_table_is_the_test_of_the_checkpoint_chosen_on_validation(tmp_path, tiny_classifiers, cache_dir,
                                                                         monkeypatch, capsys):  # fmt: skip
    paths = {d: shutil.copy(tiny_classifiers[d], tmp_path / f"{d}.ckpt") for d in ("mnist", "mnist_m")}
    monkeypatch.setattr(demo, "ensure_classifier", lambda domain, trained=None: paths[domain])
    run = tmp_path / "demo"
    demo.main([f"--trainer.default_root_dir={run}", "--trainer.max_epochs=2",
               "--trainer.logger=false",  # drops the default W&B logger's init_args before the switch to CSV
               f"--trainer.logger={{'class_path': 'lightning.pytorch.loggers.CSVLogger', 'init_args': {{'save_dir': '{run}'}}}}",
               f"--data.init_args.cache_dir={cache_dir}", "--data.init_args.batch_size=4",
               "--data.init_args.batches_per_epoch=2", "--data.init_args.val_size=24", "--data.init_args.test_limit=16",
               f"--model.init_args.classifier_a={paths['mnist']}", f"--model.init_args.classifier_b={paths['mnist_m']}",
               *[f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")]])  # fmt: skip
    out = capsys.readouterr().out
    rows = list(csv.DictReader(open(next(run.glob("lightning_logs/version_*/metrics.csv")))))
    val = [float(r["val/acc_mean"]) for r in rows if r.get("val/acc_mean")]
    chosen = val.index(max(val))
    assert re.search(rf"checkpoint chosen on validation \(held out of training\): after epoch {chosen + 1} of 2, "
                     rf"val/acc_mean = {max(val):.3f}", out)  # fmt: skip
    assert "| ACCR mnist -> mnist_m (embedded digits) | test, checkpoint chosen on validation |" in out
    test = {k: float(v) for r in rows for k, v in r.items() if k.startswith("test/") and v}
    for key, name in (("acc_a2b", "accuracy A->B"), ("acc_b2a", "accuracy B->A"), ("fid_b", "FID on B")):
        assert f"| {name} | {test[f'test/{key}']:.3f} |" in out
    assert "no translation (target classifier on untranslated test images)" in out and "(test)" not in out
