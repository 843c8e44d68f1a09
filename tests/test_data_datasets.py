"""Each public dataset layout in miniature (real files), labels by name, and the loader."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from _videos import coded_frame, write_video

from dtfcli.data.datasets import AnnotationError, build_dataset, label_mapping
from dtfcli.data.loader import SkipCounter, make_loader
from dtfcli.data.transforms import TestTransform


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One small real file per container format, copied into the layouts."""
    folder = tmp_path_factory.mktemp("src")
    write_video(folder / "a.mp4", 12)
    write_video(folder / "a.webm", 12, codec="libvpx-vp9")
    write_video(folder / "a.avi", 12, codec="mpeg4", options={"bf": "2"})
    return folder


def test_kinetics400_csv_with_quotes_odd_ids_and_sanitised_folders(tmp_path, clips, caplog):
    root = tmp_path / "k400"
    (root / "annotations").mkdir(parents=True)
    rows = [
        ('"passing American football (in game)"', "-abc_DEF-12", 10, 20),
        ('"massaging person\'s head"', "_x_y-", 0, 10),
        ("abseiling", "q1", 5, 15),
        ("abseiling", "gone_video", 1, 11),  # listed but not downloaded
    ]
    lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
    lines += [f"{label},{vid},{s},{e},val,0" for label, vid, s, e in rows]
    (root / "annotations" / "validate.csv").write_text("\n".join(lines) + "\n")
    # Downloaders sanitise class folder names; the reader must not care.
    for label, vid, s, e in rows[:3]:
        folder = root / "val" / label.strip('"').replace(" ", "_").replace("(", "").replace(")", "").replace("'", "")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips / "a.mp4", folder / f"{vid}_{s:06d}_{e:06d}.mp4")
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("kinetics400", root, "val", clip_len=4, frame_interval=2)
    assert ds.classes == ["abseiling", "massaging person's head", "passing American football (in game)"]
    by_id = {s.path.split("/")[-1]: ds.classes[s.label] for s in ds.samples}
    assert by_id == {"-abc_DEF-12_000010_000020.mp4": "passing American football (in game)",
                     "_x_y-_000000_000010.mp4": "massaging person's head",
                     "q1_000005_000015.mp4": "abseiling"}
    assert len(ds.missing) == 1
    records = [r for r in caplog.records if "missing" in r.getMessage()]
    assert len(records) == 1 and "1 of 4" in records[0].getMessage()
    assert ds[0]["clip"].shape == (4, 48, 64, 3)


def test_kinetics_malformed_row_names_file_and_line(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                          "abseiling,a1,0,10,val\nabseiling,a2,zero,10,val\n")
    with pytest.raises(AnnotationError, match=r"validate\.csv:3"):
        build_dataset("kinetics400", tmp_path, "val")


def test_model_label_order_is_matched_by_name():
    dataset = ["abseiling", "passing American football (in game)", "massaging person's head"]
    model = ["massaging_persons_head", "abseiling", "passing_American_football_in_game"]
    assert label_mapping(dataset, model).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="not among the model's labels"):
        label_mapping(dataset + ["yoga"], model)


def _ssv2(root, clips, entries, labels):
    (root / "labels").mkdir(parents=True)
    (root / "20bn-something-something-v2").mkdir()
    (root / "labels" / "labels.json").write_text(json.dumps({n: str(i) for i, n in enumerate(labels)}))
    (root / "labels" / "validation.json").write_text(json.dumps(entries))
    for e in entries:
        shutil.copy(clips / "a.webm", root / "20bn-something-something-v2" / f"{e['id']}.webm")


def test_ssv2_labels_from_templates(tmp_path, clips):
    labels = ["Holding something", "Putting something on a surface"]
    entries = [{"id": "7", "label": "putting cup on a surface", "template": "Putting [something] on a surface",
                "placeholders": ["cup"]},
               {"id": "12", "label": "holding pen", "template": "Holding [something]", "placeholders": ["pen"]}]
    _ssv2(tmp_path, clips, entries, labels)
    ds = build_dataset("ssv2", tmp_path, "validation", transform=TestTransform(32))
    assert ds.classes == labels and [s.label for s in ds.samples] == [1, 0]
    assert ds.sampling == "segments" and ds[0]["clip"].shape == (3, 8, 32, 32)


def test_ssv2_unknown_template_names_the_file(tmp_path, clips):
    _ssv2(tmp_path, clips, [{"id": "1", "template": "Juggling [something]"}], ["Holding something"])
    with pytest.raises(AnnotationError, match="validation.json.*Juggling something"):
        build_dataset("ssv2", tmp_path, "validation")


def test_ssv1_frame_folders_and_both_class_orders(tmp_path):
    from PIL import Image

    (tmp_path / "something-something-v1-labels.csv").write_text("Pushing something\nDropping something\n")
    (tmp_path / "something-something-v1-validation.csv").write_text("100;Dropping something\n101;Pushing something\n")
    for vid in ("100", "101"):
        folder = tmp_path / "20bn-something-something-v1" / vid
        folder.mkdir(parents=True)
        for i in range(6):
            Image.fromarray(coded_frame(i, 48, 64)).save(folder / f"{i + 1:05d}.jpg")
    ds = build_dataset("ssv1", tmp_path, "validation", clip_len=3)
    assert ds.classes == ["Pushing something", "Dropping something"]
    assert [ds.classes[s.label] for s in ds.samples] == ["Dropping something", "Pushing something"]
    assert ds[0]["clip"].shape == (3, 48, 64, 3)
    sorted_ds = build_dataset("ssv1", tmp_path, "validation", class_order="sorted")
    assert sorted_ds.classes == ["Dropping something", "Pushing something"]
    assert [sorted_ds.classes[s.label] for s in sorted_ds.samples] == ["Dropping something", "Pushing something"]
    (tmp_path / "something-something-v1-validation.csv").write_text("100;Dropping something\n101;Pushing;x\n")
    with pytest.raises(AnnotationError, match=r"validation\.csv:2"):
        build_dataset("ssv1", tmp_path, "validation")


def test_ucf101_split_files(tmp_path, clips):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 2\n"
                                           "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n")
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g02_c01.avi\n")
    for rel in ("Archery/v_Archery_g01_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                "Archery/v_Archery_g02_c01.avi"):
        (tmp_path / "UCF-101" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips / "a.avi", tmp_path / "UCF-101" / rel)
    train = build_dataset("ucf101", tmp_path, "train", clip_len=4, frame_interval=1)
    assert train.classes == ["ApplyEyeMakeup", "Archery"] and [s.label for s in train.samples] == [1, 0]
    test = build_dataset("ucf101", tmp_path, "test")
    assert len(test) == 1 and test.samples[0].label == 1
    assert train[0]["clip"].shape == (4, 48, 64, 3)
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 2\nBowling/v.avi 3\n")
    with pytest.raises(AnnotationError, match=r"trainlist01\.txt:2"):
        build_dataset("ucf101", tmp_path, "train")


def test_hmdb51_split_files(tmp_path, clips):
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "wave_test_split1.txt").write_text("w1.avi 1\nw2.avi 2\nw3.avi 0\n")
    (splits / "brush_hair_test_split1.txt").write_text("b1.avi 2\nb2.avi 1\n")
    for cls, names in {"wave": ("w1", "w2", "w3"), "brush_hair": ("b1", "b2")}.items():
        (tmp_path / "hmdb51" / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(clips / "a.avi", tmp_path / "hmdb51" / cls / f"{n}.avi")
    train = build_dataset("hmdb51", tmp_path, "train")
    test = build_dataset("hmdb51", tmp_path, "test")
    assert train.classes == ["brush_hair", "wave"]
    assert sorted((s.path.split("/")[-1], s.label) for s in train.samples) == [("b2.avi", 0), ("w1.avi", 1)]
    assert sorted((s.path.split("/")[-1], s.label) for s in test.samples) == [("b1.avi", 0), ("w2.avi", 1)]
    (splits / "wave_test_split1.txt").write_text("w1.avi 1\nw2.avi\n")
    with pytest.raises(AnnotationError, match=r"wave_test_split1\.txt:2"):
        build_dataset("hmdb51", tmp_path, "train")


def test_path_label_list_and_folder_per_class(tmp_path, clips):
    (tmp_path / "my videos").mkdir()
    shutil.copy(clips / "a.mp4", tmp_path / "my videos" / "clip one.mp4")
    shutil.copy(clips / "a.webm", tmp_path / "my videos" / "clip2.webm")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "val.txt").write_text("my videos/clip one.mp4 1\nmy videos/clip2.webm 0\n")
    ds = build_dataset("list", tmp_path, "val")
    assert ds.classes == ["cat", "dog"] and [s.label for s in ds.samples] == [1, 0]
    (tmp_path / "val.txt").write_text("my videos/clip one.mp4 1\nmy videos/clip2.webm 7\n")
    with pytest.raises(AnnotationError, match=r"val\.txt:2"):
        build_dataset("list", tmp_path, "val")

    for cls, src in (("walking", "a.mp4"), ("jumping", "a.webm"), ("jumping", "a.avi")):
        (tmp_path / "tree" / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(clips / src, tmp_path / "tree" / cls / src)
    folder = build_dataset("folder", tmp_path / "tree", "")
    assert folder.classes == ["jumping", "walking"]
    assert sorted(s.label for s in folder.samples) == [0, 0, 1]


def test_loader_skips_and_counts_broken_videos(tmp_path, clips):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            shutil.copy(clips / "a.mp4", tmp_path / cls / f"{i}.mp4")
    (tmp_path / "b" / "broken.mp4").write_text("not a video")
    (tmp_path / "a" / "empty.mp4").write_bytes(b"")
    ds = build_dataset("folder", tmp_path, "", clip_len=4, frame_interval=2, transform=TestTransform(32))
    assert len(ds) == 8
    counter, seen = SkipCounter(), 0
    for batch in make_loader(ds, batch_size=3, num_workers=2, shuffle=True, seed=0):
        counter.update(batch)
        if batch["clip"] is not None:
            assert batch["clip"].shape[1:] == (3, 4, 32, 32) and batch["clip"].dtype == torch.float32
            seen += batch["clip"].shape[0]
    assert seen == 6 and counter.count == 2
    assert {p.split("/")[-1] for p, _ in counter.examples} == {"broken.mp4", "empty.mp4"}
    assert "2 videos skipped" in counter.summary()
